"""The driver of a sweep is killed (SIGKILL, as when the job's pod goes); `xdrl tune --resume` finishes it."""

import os
import signal
import subprocess
import time

import optuna
import pytest

from tests.deploy.ray_head import ray_head
from tests.distributed.helpers import assert_one_history, experiment, trial_dirs, trial_info
from tests.helpers import REPO, run_xdrl, xdrl_command
from xdrl.builder.metrics import read_metrics_file

pytestmark = pytest.mark.slow


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_killed_driver_then_resume_finishes_every_trial_with_one_history(tmp_path):
    args = experiment(
        tmp_path,
        "driverloss",
        "search.num_samples=2",
        "search.scheduler=none",
        "collector.total_frames=1536",
        "hooks.eval.interval_frames=384",
        "checkpoint.interval=3",
    )
    experiment_dir = tmp_path / "driverloss"
    with ray_head(num_cpus=2, num_gpus=0, jobs=False) as head:
        env = {**head.env, "RAY_ADDRESS": head.gcs_address, "WANDB_MODE": "offline"}
        driver = subprocess.Popen(
            xdrl_command("tune", *args), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + 300
        # Kill once a trial has recorded iterations past its checkpoint of iteration 3.
        while not any(len(read_metrics_file(d / "metrics.jsonl")) >= 5 for d in _dirs(experiment_dir)):
            assert driver.poll() is None, driver.stdout.read()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
        recorded = {d.name: len(read_metrics_file(d / "metrics.jsonl")) for d in _dirs(experiment_dir)}
        # Ray ends the actors of a driver that is gone: the trials stop with it.
        trial_pids = [trial_info(d)[-1]["pid"] for d in _dirs(experiment_dir) if (d / "trial_info.json").exists()]
        deadline = time.monotonic() + 60
        while any(_pid_alive(pid) for pid in trial_pids):
            assert time.monotonic() < deadline, "the trials outlived their driver"
            time.sleep(0.2)

        resumed = run_xdrl("tune", "--resume", str(experiment_dir), timeout=600, env=env)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    dirs = trial_dirs(experiment_dir)
    assert len(dirs) == 2  # num_samples trials in all, no new one proposed
    for trial_dir in dirs:
        assert_one_history(trial_dir, 12)
        attempts = trial_info(trial_dir)
        if recorded.get(trial_dir.name, 0) >= 5:
            assert len(attempts) == 2 and attempts[1]["resumed_after"] < recorded[trial_dir.name]
    study = optuna.load_study(study_name="driverloss", storage=f"sqlite:///{experiment_dir / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2


def _dirs(experiment_dir):
    return trial_dirs(experiment_dir) if experiment_dir.exists() else []
