"""The W&B key comes from the node (environment, ``wandb login``, a key file) and goes to W&B in memory only."""

import json
import os
import secrets
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import REPO, files_containing
from xdrl.builder.loggers import NETRC_SOURCE, public_config, wandb_api_key, wandb_offline
from xdrl.config import compose_config
from xdrl.config.credentials import WANDB_API_KEY_FILE_ENV
from xdrl.config.errors import ConfigError
from xdrl.config.schema import ExperimentConfig, from_mapping


def canary_key() -> str:
    # W&B checks the form of a key (40+ characters after the first dash) before it uses it.
    return f"canary-wandb-{secrets.token_hex(20)}"


def experiment_config(*overrides: str) -> ExperimentConfig:
    return from_mapping(ExperimentConfig, compose_config(["experiment=cartpole_ppo", "logger=wandb", *overrides]))


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A node without any W&B key: an empty home, no WANDB_API_KEY, no key file named."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("NETRC", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv(WANDB_API_KEY_FILE_ENV, raising=False)
    return home


def key_file(directory, name, key):
    path = directory / name
    path.write_text(key + "\n")
    path.chmod(0o600)
    return path


def test_the_order_environment_netrc_config_file_launcher_file(node, tmp_path, monkeypatch):
    config_file = key_file(tmp_path, "from-config", canary_key())
    launcher_file = key_file(tmp_path, "from-launcher", canary_key())
    logger = experiment_config(f"logger.api_key_file={config_file}").logger
    assert wandb_api_key(logger) and wandb_api_key(logger).source == str(config_file)  # (3)

    monkeypatch.setenv(WANDB_API_KEY_FILE_ENV, str(launcher_file))
    found = wandb_api_key(logger)
    assert (found.source, found.key) == (str(config_file), config_file.read_text().strip())  # (3) before (4)
    found = wandb_api_key(experiment_config().logger)
    assert (found.source, found.key) == (str(launcher_file), launcher_file.read_text().strip())  # (4)

    (node / ".netrc").write_text(f"machine api.wandb.ai\n  login user\n  password {canary_key()}\n")
    (node / ".netrc").chmod(0o600)
    assert wandb_api_key(logger) == wandb_api_key(None)
    assert (wandb_api_key(logger).source, wandb_api_key(logger).key) == (NETRC_SOURCE, None)  # (2): W&B reads it

    monkeypatch.setenv("WANDB_API_KEY", canary_key())
    assert (wandb_api_key(logger).source, wandb_api_key(logger).key) == ("WANDB_API_KEY", None)  # (1)


def test_no_key_anywhere_is_none_and_auto_mode_logs_offline(node, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    config = experiment_config("logger.mode=auto")
    assert wandb_api_key(config.logger) is None
    assert wandb_offline(config)


def test_a_key_file_makes_auto_mode_online(node, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv(WANDB_API_KEY_FILE_ENV, str(key_file(tmp_path, "key", canary_key())))
    assert not wandb_offline(experiment_config("logger.mode=auto"))
    assert wandb_offline(experiment_config("logger.mode=offline"))


@pytest.mark.parametrize("source", ["config", "environment"])
def test_a_named_key_file_that_is_missing_names_the_key_and_the_path(node, tmp_path, monkeypatch, source):
    missing = tmp_path / "nowhere" / "wandb-api-key"
    if source == "config":
        logger, key = experiment_config(f"logger.api_key_file={missing}").logger, "logger.api_key_file"
    else:
        monkeypatch.setenv(WANDB_API_KEY_FILE_ENV, str(missing))
        logger, key = experiment_config().logger, WANDB_API_KEY_FILE_ENV
    with pytest.raises(ConfigError) as raised:
        wandb_api_key(logger)
    assert (raised.value.key, raised.value.value) == (key, str(missing))


def test_w_and_b_records_no_key_file_and_no_url_password():
    config = experiment_config("logger.api_key_file=/etc/xdrl/secrets/wandb-api-key")
    config.search = {"study": {"storage": "postgresql://xdrl:canary-pw@db/optuna"}}
    recorded = json.dumps(public_config(config))
    assert "wandb-api-key" not in recorded and "canary-pw" not in recorded
    assert "postgresql://xdrl:***@db/optuna" in recorded


# A run in a process of its own: an empty home and temp dir, so every file W&B writes lands where
# the test looks (its service's logs under ~/.cache, the run directory, any ~/.netrc).
RUN = textwrap.dedent(
    """
    import json, os, pathlib, sys
    from xdrl.builder.loggers import make_wandb_logger
    from xdrl.config import compose_config
    from xdrl.config.schema import ExperimentConfig, from_mapping

    raw = compose_config(["experiment=cartpole_ppo", "logger=wandb", f"logger.api_key_file={sys.argv[2]}"])
    logger = make_wandb_logger(from_mapping(ExperimentConfig, raw), pathlib.Path(sys.argv[1]), "keyrun01")
    run = logger.experiment
    seen = {"run_has_the_key": run.settings.api_key == pathlib.Path(sys.argv[2]).read_text().strip(),
            "process_env_has_a_key": "WANDB_API_KEY" in os.environ, "offline": run.settings._offline}
    logger.log_scalar("x", 1.0, step=1)
    run.finish()
    print(json.dumps(seen))
    """
)


@pytest.mark.slow
def test_a_key_from_a_file_reaches_the_w_and_b_run_and_no_file(tmp_path):
    key = canary_key()
    node_files = tmp_path / "node"
    node_files.mkdir()
    path = key_file(node_files, "wandb-api-key", key)
    home, scratch, output = tmp_path / "home", tmp_path / "tmp", tmp_path / "run"
    for directory in (home, scratch, output):
        directory.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k not in ("XDRL_WANDB_API_KEY_FILE",)}
    env.update(HOME=str(home), TMPDIR=str(scratch), WANDB_MODE="offline", WANDB_SILENT="true")
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(output), str(path)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"run_has_the_key": True, "process_env_has_a_key": False, "offline": True}
    assert f"xdrl: W&B API key from {path} (run keyrun01)" in done.stderr  # where from, never what
    assert key not in done.stdout + done.stderr
    assert list((output / "wandb").glob("offline-run-*/run-keyrun01.wandb"))  # the run was written
    assert not (home / ".netrc").exists()
    assert files_containing(key, tmp_path) == [path]  # the key file, and nothing W&B wrote
