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
