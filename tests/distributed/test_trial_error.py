"""A trial that raises in the middle of training: Tune records the error, W&B and the files stay complete."""

import pytest

from tests.distributed.faults import FAIL_AT_VAR, MESSAGE, fail_optimisation
from tests.distributed.helpers import assert_one_history, experiment, results, trial_dirs, trial_info
from tests.helpers import REPO
from xdrl.builder.metrics import read_metrics_file
from xdrl.distributed import tuner
from xdrl.records.wandb_files import find_run_files, read_run

pytestmark = pytest.mark.slow


@pytest.fixture
def faulty_ray():
    """A local Ray whose workers make the fourth optimisation phase of a trainer raise."""
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={
            "worker_process_setup_hook": fail_optimisation,
            "env_vars": {FAIL_AT_VAR: "4", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        },
    )
    yield
    ray.shutdown()


def test_trial_that_raises_leaves_a_finished_wandb_run_with_every_row(faulty_ray, tmp_path):
    plan = tuner.plan(
        experiment(tmp_path, "raises", "search.num_samples=1", "search.scheduler=none", "search.max_failures=0")
    )
    grid = tuner.run(plan)
    (error,) = grid.errors
    assert MESSAGE in str(error)
    (trial_dir,) = trial_dirs(tmp_path / "raises")
    assert "error.txt" in {p.name for p in trial_dir.iterdir()}
    # Iterations 1-3 finished and were reported; the fourth failed in its optimisation phase
    # and reached no sink: W&B, the metrics file and Tune hold the same iterations.
    assert [r["counters/iter"] for r in results(trial_dir)] == [1, 2, 3]
    rows = read_metrics_file(trial_dir / "metrics.jsonl")
    assert [r["counters/iter"] for r in rows] == [1, 2, 3]
    (run_file,) = find_run_files(trial_dir / "wandb")
    run = read_run(run_file)
    assert run.finished and run.exit_code == 1  # finished, marked failed
    assert [{k: h[k] for k in row} for h, row in zip(run.history, rows, strict=True)] == rows
    (attempt,) = trial_info(trial_dir)
    assert attempt["finished"] is not None


def test_retry_after_a_raise_continues_the_same_wandb_run_with_one_history(faulty_ray, tmp_path):
    plan = tuner.plan(
        experiment(tmp_path, "retried", "search.num_samples=1", "search.scheduler=none", "search.max_failures=1")
    )
    assert not tuner.run(plan).errors  # the retry restored iteration 2's checkpoint and finished
    (trial_dir,) = trial_dirs(tmp_path / "retried")
    first_attempt, retry = trial_info(trial_dir)
    assert retry["resumed_after"] == 2  # iteration 3 was recorded, then re-run: its first record stands
    first, second = (read_run(p) for p in sorted(find_run_files(trial_dir / "wandb")))
    assert first.run_id == second.run_id
    assert first.exit_code == 1 and second.exit_code == 0
    assert [h["counters/iter"] for h in first.history] == [1, 2, 3]
    assert_one_history(trial_dir, 4)


def test_a_trial_that_raises_in_a_reused_worker_leaves_the_next_trial_a_fresh_one(faulty_ray, tmp_path):
    # Three 2-iteration trials one at a time: the worker's fourth optimisation phase raises, which is
    # the second iteration of its second trial.
    plan = tuner.plan(
        experiment(
            tmp_path,
            "reused",
            "search.searcher=random",
            "search.scheduler=none",
            "search.max_concurrent_trials=1",
            "search.space={algo:{lr:{type:choice,values:[0.001]}}}",
            "search.num_samples=3",
            "search.max_failures=0",
            "collector.total_frames=256",
        )
    )
    (error,) = tuner.run(plan).errors
    assert MESSAGE in str(error)
    first, failed, last = sorted(trial_dirs(tmp_path / "reused"), key=lambda d: trial_info(d)[0]["started"])
    (first_attempt,), (failed_attempt,), (last_attempt,) = (trial_info(d) for d in (first, failed, last))
    # The failure came in the worker's second trial; Tune does not give a failed trial's worker another
    # trial, so the third one starts in a fresh process.
    assert failed_attempt["pid"] == first_attempt["pid"] and failed_attempt["process_trial"] == 2
    assert last_attempt["pid"] != first_attempt["pid"] and last_attempt["process_trial"] == 1
    (failed_run,) = (read_run(p) for p in find_run_files(failed / "wandb"))
    assert failed_run.finished and failed_run.exit_code == 1
    assert [h["counters/iter"] for h in failed_run.history] == [1]
    assert [r["counters/iter"] for r in read_metrics_file(failed / "metrics.jsonl")] == [1]
    assert failed_attempt["finished"] is not None
    for trial_dir in (first, last):
        (run_file,) = find_run_files(trial_dir / "wandb")
        assert read_run(run_file).exit_code == 0
        assert_one_history(trial_dir, 2)
