"""End to end: a real head (`ray start`, token auth), a sweep submitted with the `ray job submit` CLI."""

import re
import subprocess

import optuna
import pytest

from tests.deploy.ray_head import processes_using, ray_head
from tests.distributed.helpers import experiment, results, trial_dirs
from tests.helpers import REPO
from xdrl.records.wandb_files import find_run_files, read_run

pytestmark = pytest.mark.slow


def test_submitted_sweep_succeeds_with_study_and_wandb_runs(tmp_path):
    with ray_head() as head:
        submit = subprocess.run(
            [
                "bash",
                "cluster/submit.sh",
                "--address",
                head.address,
                "--wait",
                "--",
                "tune",
                *experiment(tmp_path, "job", "search.num_samples=2", "search.scheduler=none"),
            ],
            env=head.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
        )
        output = submit.stdout + submit.stderr
        assert submit.returncode == 0, output[-5000:]
        job_id = re.search(r"^job: (\S+)", submit.stdout, re.M).group(1)
        status = subprocess.run(
            ["ray", "job", "status", "--address", head.address, job_id],
            env=head.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert f"job '{job_id}' succeeded" in (status.stdout + status.stderr).lower()
        assert f"ray job logs --address {head.address} --follow {job_id}" in submit.stdout
        temp_dir = head.temp_dir
    assert processes_using(temp_dir) == []  # the head this test started is gone

    experiment_dir = tmp_path / "job"
    dirs = trial_dirs(experiment_dir)
    assert len(dirs) == 2
    study = optuna.load_study(study_name="job", storage=f"sqlite:///{experiment_dir / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for trial_dir in dirs:
        assert [r["counters/iter"] for r in results(trial_dir)] == [1, 2, 3, 4]
        (run_file,) = find_run_files(trial_dir / "wandb")
        run = read_run(run_file)
        assert run.finished and run.exit_code == 0 and len(run.history) == 4
