"""`xdrl tune` as a user runs it: pre-flight errors, and a driver interrupted with Ctrl-C then resumed."""

import os
import signal
import subprocess
import time

import optuna
import pytest

from tests.distributed.helpers import (
    assert_one_history,
    experiment,
    persisted_statuses,
    results,
    started_trial_dirs,
    trial_dirs,
)
from tests.helpers import REPO, run_xdrl, xdrl_command
from tests.report.test_report import snapshot
from xdrl.builder.metrics import read_metrics_file
from xdrl.records.wandb_files import find_run_files
from xdrl.report.build import build_report

pytestmark = pytest.mark.slow


def test_preflight_error_exits_2_before_ray_starts(tmp_path):
    result = run_xdrl(
        "tune", *experiment(tmp_path, "typo", "search.metric=eval/deterministic/reward/episode_rewrd_mean")
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("xdrl: error: search.metric='eval/deterministic/reward/episode_rewrd_mean' is not accepted")
    assert "eval/deterministic/reward/episode_reward_mean" in line
    assert "Started a local Ray instance" not in result.stdout + result.stderr
    assert not (tmp_path / "typo").exists()
    assert result.stdout == ""  # not even the experiment directory line: nothing started


def test_sigint_then_resume_runs_each_trial_once(tmp_path):
    args = experiment(
        tmp_path,
        "interrupted",
        "search.num_samples=2",
        "search.max_concurrent_trials=1",
        "search.scheduler=none",
        "collector.total_frames=1024",
    )
    env = {**os.environ, "WANDB_MODE": "offline", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    process = subprocess.Popen(
        xdrl_command("tune", *args), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    experiment_dir = tmp_path / "interrupted"

    def finished():
        return [name for name, status in persisted_statuses(experiment_dir).items() if status == "TERMINATED"]

    def second_trial_training():
        # One trial at a time: Tune started the second one once it had taken in the first one's end.
        rows = [len(read_metrics_file(d / "metrics.jsonl")) for d in started_trial_dirs(experiment_dir)]
        return len(rows) == 2 and 8 in rows and 0 < min(rows) < 4

    deadline = time.monotonic() + 300
    # Interrupt while the second trial trains: Tune saves its state (the first trial finished) on the way out.
    while not second_trial_training():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, persisted_statuses(experiment_dir)
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=180)
    before = {d.name: len(results(d)) for d in trial_dirs(experiment_dir)}
    finished_before = finished()
    assert finished_before and all(before[name] == 8 for name in finished_before), output
    assert len(finished_before) < 2, "the interrupt came too late to leave work for the resume"

    # The report reads an interrupted experiment as it is, without touching it.
    files = snapshot(experiment_dir)
    report = build_report(experiment_dir)
    assert snapshot(experiment_dir) == files
    assert not report.data.finished and "not finished" in report.markdown.read_text()
    assert {row["trial"] for row in report.rows} >= {name.split("_")[2] for name in finished_before}

    resumed = run_xdrl("tune", "--resume", str(experiment_dir), timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "best trial:" in resumed.stdout
    # Trial processes end quietly (W&B's service and the semaphores are released before Ray ends them).
    assert "Traceback" not in resumed.stdout + resumed.stderr, resumed.stdout + resumed.stderr
    dirs = trial_dirs(experiment_dir)
    assert len(dirs) == 2  # num_samples trials in all
    for trial_dir in dirs:
        assert_one_history(trial_dir, 8)
        reported = results(trial_dir)
        if trial_dir.name in finished_before:
            assert len(reported) == 8 == before[trial_dir.name]  # not re-run
            assert len(find_run_files(trial_dir / "wandb")) == 1
    study = optuna.load_study(study_name="interrupted", storage=f"sqlite:///{experiment_dir / 'optuna.db'}")
    # Optuna proposed num_samples trials in all, each finished once.
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
