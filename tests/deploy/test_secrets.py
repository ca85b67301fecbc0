"""Secrets never reach a file, a log or the job list: planted canaries, searched for everywhere afterwards.

Fast: ``cluster/submit.sh`` refuses what would put a secret into a job (``--forward-wandb-key``, a URL
password), ships no secret file (Ray's own packaging of the working directory), and ``xdrl tune
--resume`` of a study stored without its password stops before Ray starts.

Slow, on a real head (``ray start``, token auth) with sweeps sent by ``cluster/submit.sh``: the W&B key
reaches the trials from a key file on the node (``XDRL_WANDB_API_KEY_FILE`` in the head's environment,
as a launcher sets it) and the study's database password from ``XDRL_STUDY_PASSWORD`` there (a real
PostgreSQL with SCRAM login); neither appears in any file under the head's temp dir (Ray's session
logs, the runtime-env agent's logs, job logs, the unpacked working directory), under the experiment's
storage (``xdrl_experiment.yaml``, Tune's pickles, W&B runs), or in ``ray job list``, ``ray job status
--verbose`` and ``ray job logs``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import zipfile

import pytest

from tests.deploy.ray_head import VENV_BIN
from tests.distributed.helpers import experiment
from tests.helpers import REPO, files_containing
from xdrl.cli import main
from xdrl.config.credentials import STUDY_PASSWORD_ENV, WANDB_API_KEY_FILE_ENV
from xdrl.distributed import tuner
from xdrl.distributed.search import study_storage
from xdrl.records.experiment import BASE_CONFIG, write_base_config

SUBMIT = str(REPO / "cluster" / "submit.sh")


def wandb_canary() -> str:
    # The form W&B accepts (40+ characters after the first dash): a trial hands it to wandb.init.
    return f"canary-wandb-{secrets.token_hex(20)}"


def password_canary() -> str:
    return f"canary-pw-{secrets.token_hex(10)}"


def submit(*args: str, env: dict[str, str], cwd=REPO, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", SUBMIT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def submitter_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (WANDB_API_KEY_FILE_ENV, STUDY_PASSWORD_ENV)}
    return {**env, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}", **extra}


# ---------------------------------------------------------------------------------------------
# submit.sh: what it refuses, what it forwards, what it ships


def test_forward_wandb_key_is_refused_with_where_the_key_comes_from_now():
    done = submit("--forward-wandb-key", "--", "tune", env=submitter_env(WANDB_API_KEY=wandb_canary()))
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "--forward-wandb-key is gone" in line and "XDRL_WANDB_API_KEY_FILE" in line and "WANDB_API_KEY" in line


@pytest.mark.parametrize(
    "template",
    [
        "search.study.storage=postgresql://xdrl:{pw}@db.internal:5432/optuna",
        "+search.study.storage=mysql+pymysql://root:{pw}@10.0.0.7/optuna",
        "search.study.storage=postgresql://xdrl:p@{pw}@db/optuna",  # an unescaped @: all of it is hidden
    ],
)
def test_an_argument_with_a_url_password_is_refused_without_repeating_it(template):
    password = password_canary()
    argument = template.format(pw=password)
    done = submit("--dry-run", "--", "tune", "experiment=cartpole_ppo", argument, env=submitter_env())
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert password not in line and ":***@" in line
    assert "XDRL_STUDY_PASSWORD" in line and "search.study.password_file" in line and "head node" in line


def test_urls_without_a_password_are_submitted_and_no_secret_of_the_shell_is_forwarded():
    key, password = wandb_canary(), password_canary()
    env = submitter_env(WANDB_API_KEY=key, WANDB_MODE="offline", WANDB_PROJECT="p")
    env.update({STUDY_PASSWORD_ENV: password, WANDB_API_KEY_FILE_ENV: "/etc/xdrl/secrets/wandb-api-key"})
    storage = "search.study.storage=postgresql://xdrl@db.internal/optuna"
    stored = "search.study.storage=postgresql://xdrl:***@db.internal/optuna"  # what a stored experiment has
    for argument in (storage, stored):
        done = submit("--dry-run", "--", "tune", argument, env=env)
        assert done.returncode == 0, done.stderr
        assert key not in done.stdout and password not in done.stdout
        runtime_env = json.loads(re.search(r"^runtime env: (.*)$", done.stdout, re.M).group(1))
        forwarded = runtime_env["env_vars"]
        assert {"WANDB_MODE": "offline", "WANDB_PROJECT": "p"}.items() <= forwarded.items()
        assert set(forwarded) <= {"WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
        assert done.stdout.rstrip().endswith(f"-- python -m xdrl.cli tune {argument}")


def excludes_of_submit() -> list[str]:
    done = submit("--dry-run", "--", "tune", env=submitter_env())
    return json.loads(re.search(r"^runtime env: (.*)$", done.stdout, re.M).group(1))["excludes"]


#: Files a user may have in the directory they submit from, each planted with a canary.
PLANTED = [
    ".env",
    ".env.production",
    "cluster.env",
    "deploy.pem",
    "configs/tls.key",
    "client.p12",
    "auth_token",
    ".netrc",
    ".pgpass",
    "credentials",
    "gcp-service-account.json",
    "db-secret.txt",
    "configs/secrets/wandb.yaml",
    "notes/my_secrets.yaml",
    "id_ed25519",
    ".aws/credentials",
]


def plant_secrets(root, canary: str) -> None:
    for name in PLANTED:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"WANDB_API_KEY={canary}\n")


def test_the_working_directory_ships_without_secret_files(tmp_path):
    """Ray's own packaging of ``--working-dir`` (ray 2.60 ``create_package``) with submit.sh's excludes."""
    from ray._private.runtime_env.packaging import create_package

    canary = wandb_canary()
    root = tmp_path / "checkout"
    for code in ("xdrl/config/credentials.py", "tests/deploy/test_secrets.py", "configs/search/optuna.yaml"):
        (root / code).parent.mkdir(parents=True, exist_ok=True)
        (root / code).write_text("# code about secrets is code\n")
    plant_secrets(root, canary)
    package = tmp_path / "package.zip"
    create_package(str(root), package, include_gitignore=True, excludes=excludes_of_submit())

    shipped = set(zipfile.ZipFile(package).namelist())
    assert {"xdrl/config/credentials.py", "tests/deploy/test_secrets.py", "configs/search/optuna.yaml"} <= shipped
    assert not [name for name in shipped if any(name == p or name.startswith(p + "/") for p in PLANTED)], shipped
    assert files_containing(canary, tmp_path) == sorted(root / name for name in PLANTED)  # not in the package


def test_the_secret_patterns_of_dockerignore_and_gitignore_are_excluded_from_a_job():
    excludes = set(excludes_of_submit())

    def section_after_the_secrets_comment(name: str) -> list[str]:
        lines = (REPO / name).read_text().splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("#") and "secret" in line.lower())
        patterns = [line.removeprefix("**/").rstrip("/") for line in lines[start + 1 :]]
        return [pattern for pattern in patterns if pattern and not pattern.startswith("#")]

    for name in (".dockerignore", ".gitignore"):
        patterns = section_after_the_secrets_comment(name)
        assert patterns and not set(patterns) - excludes, (name, set(patterns) - excludes)


# ---------------------------------------------------------------------------------------------
# xdrl tune: what it stores and prints, and a resume without the password


def test_a_password_in_the_url_is_stored_and_printed_as_stars_and_resume_needs_it_again(tmp_path, monkeypatch, capsys):
    import ray

    monkeypatch.delenv(STUDY_PASSWORD_ENV, raising=False)
    password = password_canary()
    url = f"postgresql://xdrl:{password}@127.0.0.1:1/optuna"
    plan = tuner.plan(experiment(tmp_path, "local", f"search.study.storage={url}"))
    line = tuner.study_line(plan)
    assert line == "optuna study: postgresql://xdrl:***@127.0.0.1:1/optuna (study local, password from the URL)"
    assert study_storage(plan.search, plan.experiment_dir).url == url  # what Optuna would get
    write_base_config(str(plan.experiment_dir), plan.base, plan.overrides)  # as tuner.run stores it
    stored = (plan.experiment_dir / BASE_CONFIG).read_text()
    assert "postgresql://xdrl:***@127.0.0.1:1/optuna" in stored
    assert files_containing(password, tmp_path) == []

    code = main(["tune", "--resume", str(plan.experiment_dir)])
    out, err = capsys.readouterr()
    assert code == 2 and password not in out + err
    (error,) = err.strip().splitlines()
    assert error.startswith("xdrl: error: search.study.storage='postgresql://xdrl:***@127.0.0.1:1/optuna'")
    assert "XDRL_STUDY_PASSWORD" in error and "search.study.password_file" in error
    assert not ray.is_initialized()  # stopped before Ray
    assert (plan.experiment_dir / BASE_CONFIG).read_text() == stored
    assert sorted(p.name for p in plan.experiment_dir.iterdir()) == [BASE_CONFIG]


# ---------------------------------------------------------------------------------------------
# End to end on a real head
