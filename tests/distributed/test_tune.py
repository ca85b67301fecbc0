"""Real Tune experiments on a local Ray: the bridge, the study, per-trial W&B, GPUs, faults, ASHA."""

import os
import signal

import numpy as np
import optuna
import pytest

from tests.distributed.helpers import (
    TINY_PPO_BUDGET,
    assert_one_history,
    experiment,
    results,
    trial_dirs,
    trial_info,
    wandb_runs,
    when_first_trial,
)
from xdrl.builder.metrics import read_metrics_file
from xdrl.distributed import tuner
from xdrl.records import experiment as experiment_files

METRIC = "eval/deterministic/reward/episode_reward_mean"


@pytest.mark.slow
def test_one_gpu_per_trial_never_more_trials_than_gpus(local_ray, tmp_path):
    plan = tuner.plan(
        experiment(
            tmp_path,
            "gpus",
            "search.num_samples=4",
            "search.max_concurrent_trials=4",
            "search.searcher=random",
            "search.scheduler=none",
            "resources.gpus_per_trial=1",
        )
    )
    assert not tuner.run(plan).errors
    spans = []
    for trial_dir in trial_dirs(tmp_path / "gpus"):
        (info,) = trial_info(trial_dir)
        assert len(info["gpu_ids"]) == 1 and info["device"] == "cpu"  # logical GPU, no CUDA here
        spans.append((info["started"], info["finished"], info["gpu_ids"][0]))
    assert len(spans) == 4
    # At the moment any trial starts, at most two run (itself included), each on its own GPU. (A reused
    # worker starts its next trial right after the last one, so spans merely touching are not concurrent.)
    for start, _end, _gpu in spans:
        running = [other for other in spans if other[0] <= start < other[1]]
        assert len(running) <= 2
        assert len({o[2] for o in running}) == len(running)


@pytest.mark.slow
def test_killed_trial_worker_resumes_from_its_checkpoint_with_one_history(local_ray, tmp_path):
    plan = tuner.plan(
        experiment(
            tmp_path,
            "fault",
            "search.num_samples=1",
            "collector.total_frames=1536",
            "search.scheduler=none",
            "hooks.eval.interval_frames=384",
            "checkpoint.interval=3",
        )
    )

    def rows(trial_dir):
        return len(read_metrics_file(trial_dir / "metrics.jsonl"))

    def between_checkpoints(trial_dir):
        # Tune holds the checkpoint of iteration 3k once row 3k+1 is written; at row 3k it may or may
        # not hold it yet. A kill at row 3k+1 or 3k+2 (k >= 1) resumes from 3k and re-runs iterations
        # the records already hold. The watcher shares the driver's GIL and can lag behind the
        # worker, so the worker is stopped before the count that decides is taken.
        if rows(trial_dir) < 5 or rows(trial_dir) % 3 == 0:
            return False
        pid = trial_info(trial_dir)[-1]["pid"]
        os.kill(pid, signal.SIGSTOP)
        if rows(trial_dir) % 3 == 0:
            os.kill(pid, signal.SIGCONT)
            return False
        return True

    def kill(trial_dir):
        pid = trial_info(trial_dir)[-1]["pid"]
        os.kill(pid, signal.SIGKILL)
        return pid, rows(trial_dir)

    with when_first_trial(tmp_path / "fault", between_checkpoints, kill) as killed:
        grid = tuner.run(plan)
    assert killed, "the trial was never killed"
    assert not grid.errors
    (trial_dir,) = trial_dirs(tmp_path / "fault")
    attempts = trial_info(trial_dir)
    assert len(attempts) == 2 and attempts[0]["pid"] == killed[0][0]
    recorded_before_kill = killed[0][1]
    assert recorded_before_kill % 3 != 0
    # The retry continued from the last checkpoint Tune held, and re-ran iterations already recorded.
    resumed_after = attempts[1]["resumed_after"]
    assert resumed_after == recorded_before_kill // 3 * 3 and resumed_after < recorded_before_kill
    assert_one_history(trial_dir, 12)
    reported = results(trial_dir)
    # The first attempt's records stand for everything it recorded; the retry's first own result is
    # the first iteration no record held, and Tune counted it from the checkpoint.
    first_own = next(r for r in reported if r["pid"] == attempts[1]["pid"])
    assert first_own["training_iteration"] >= recorded_before_kill
    assert first_own["training_iteration"] - first_own["iterations_since_restore"] == resumed_after
    assert wandb_runs(trial_dir)[-1].exit_code == 0


@pytest.mark.slow
def test_asha_stops_the_weaker_trial_and_its_wandb_run_is_finished(local_ray, tmp_path):
    # Episodes capped at 10 steps cannot return more than 10: that trial is the weaker one at every rung.
    plan = tuner.plan(
        experiment(
            tmp_path,
            "asha",
            "search.searcher=grid",
            "search.num_samples=1",
            "search.max_concurrent_trials=1",
            "search.space={env:{max_episode_steps:{type:choice,values:[80,10]}}}",
            "search.metric=collection/reward/episode_reward_mean",
            "collector.total_frames=1024",
        )
    )
    assert not tuner.run(plan).errors
    by_cap = {}
    for trial_dir in trial_dirs(tmp_path / "asha"):
        reported = results(trial_dir)
        by_cap[reported[-1]["config"]["env.max_episode_steps"]] = (trial_dir, reported)
    strong, weak = by_cap[80], by_cap[10]
    assert len(strong[1]) == 8
    assert len(weak[1]) < 8  # stopped early by ASHA
    for trial_dir, reported in (strong, weak):
        (run,) = wandb_runs(trial_dir)
        assert run.exit_code == 0  # finished, also when stopped
        assert [h["counters/iter"] for h in run.history] == [r["counters/iter"] for r in reported]


def test_preflight_errors_name_what_exists(tmp_path):
    with pytest.raises(
        Exception,
        match=r"search.metric='eval/deterministic/reward/episode_rewrd_mean' .* eval/deterministic/reward/episode_reward_mean",
    ):
        tuner.plan(experiment(tmp_path, "x", "search.metric=eval/deterministic/reward/episode_rewrd_mean"))
    with pytest.raises(Exception, match=r"search.space='algo.lrr' .*: algo.name, algo.lr, .*algo.activation"):
        tuner.plan(experiment(tmp_path, "x", "search.space={algo:{lrr:{type:uniform,low:0.1,high:0.2}}}"))
    with pytest.raises(
        Exception, match=r"search.space.algo.minibatch_size=512 is not accepted: expected values the config accepts"
    ):
        tuner.plan(experiment(tmp_path, "x", "search.space={algo:{minibatch_size:{type:choice,values:[64,512]}}}"))
    with pytest.raises(Exception, match=r"search=None is not accepted"):
        tuner.plan(["experiment=cartpole_ppo"])
    # A warm start loads one file into every trial: no searched key may change the network's shapes.
    policy = tmp_path / "policy.pt"
    policy.write_bytes(b"")
    with pytest.raises(Exception, match=r"search.space='algo.hidden_sizes' is not accepted: expected keys that keep"):
        tuner.plan(
            experiment(
                tmp_path,
                "x",
                f"init.policy={policy}",
                "search.space={algo:{hidden_sizes:{type:choice,values:[[8],[16]]}}}",
            )
        )
    with pytest.raises(
        Exception, match=r"init.policy='.*policy.pt' is not accepted: expected a policy checkpoint of xdrl"
    ):
        tuner.plan(experiment(tmp_path, "x", f"init.policy={policy}"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.pt"]  # nothing written


@pytest.mark.slow
def test_multi_objective_study_holds_the_pareto_front(local_ray, tmp_path):
    plan = tuner.plan(
        [
            "experiment=deep_sea_treasure_ppo",
            "search=optuna_multi_objective",
            *TINY_PPO_BUDGET,
            "search.num_samples=2",
            f"search.storage_path={tmp_path}",
            "search.experiment_name=pareto",
        ]
    )
    assert not tuner.run(plan).errors
    study = optuna.load_study(study_name="pareto", storage=f"sqlite:///{tmp_path / 'pareto' / 'optuna.db'}")
    assert len(study.directions) == 2
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2 and all(len(t.values) == 2 for t in complete)
    assert study.best_trials  # the Pareto front
    finals = []
    for trial_dir in trial_dirs(tmp_path / "pareto"):
        final = results(trial_dir)[-1]
        values = [final[m] for m in plan.search.metric]
        assert any(t.values == values for t in complete)
        finals.append(values)

    from tests.report.test_report import assert_png
    from xdrl.report.build import build_report
    from xdrl.report.pareto import hypervolume, pareto_mask

    report = build_report(tmp_path / "pareto")
    points = np.array(finals)
    front = points[pareto_mask(points, ["max", "max"])]
    assert sorted(tuple(r[m] for m in plan.search.metric) for r in report.pareto) == sorted(map(tuple, front))
    assert report.hypervolume == pytest.approx(hypervolume(front, [0.0, -25.0], ["max", "max"]))
    assert_png(report.figures["pareto_front"])
    assert "Hypervolume against the reference point [0.0, -25.0]" in report.markdown.read_text()


def test_experiment_files_round_trip_through_a_storage_uri(tmp_path):
    location = f"file://{tmp_path}/bucket/exp"
    experiment_files.write_experiment_file(location, experiment_files.BASE_CONFIG, "x: 1\n")
    assert (tmp_path / "bucket" / "exp" / experiment_files.BASE_CONFIG).read_text() == "x: 1\n"
    assert experiment_files.read_experiment_file(location, experiment_files.BASE_CONFIG) == "x: 1\n"
    assert experiment_files.read_experiment_file(location, "missing.yaml") is None
    plan = tuner.plan(experiment(tmp_path, "uri", "search.num_samples=1"), check_schema=False)
    experiment_files.write_experiment_file(
        f"file://{tmp_path}/bucket/uri", experiment_files.BASE_CONFIG, __import__("yaml").safe_dump(plan.base)
    )
    resumed = tuner.plan_from_directory(f"file://{tmp_path}/bucket/uri")
    assert resumed.experiment_name == "uri" and resumed.storage_path == f"file://{tmp_path}/bucket"
    assert tuner.experiment_location(resumed) == f"file://{tmp_path}/bucket/uri"
