"""The loggers behind the metric router: W&B (online or offline) and CSV.

The W&B API key comes from the node the run is on, never from its config or its Ray job
(:func:`wandb_api_key`): what W&B finds itself (``WANDB_API_KEY``, ``wandb login``), else a
key file (``logger.api_key_file``, or the file ``XDRL_WANDB_API_KEY_FILE`` names). A key read
from a file goes to ``wandb.init`` in memory (its ``api_key`` setting): not into this
process's environment, where the processes it starts would inherit it, and not into
``~/.netrc`` (``wandb.login()`` would write it there).
"""

from __future__ import annotations

import dataclasses
import netrc
import os
import pathlib
import sys
from typing import Any

from torchrl.record.loggers import Logger

from xdrl.config.credentials import WANDB_API_KEY_FILE_ENV, read_secret_file
from xdrl.config.schema import ExperimentConfig, LoggerConfig, to_dict
from xdrl.records.redaction import hide_passwords

#: Where W&B keeps a ``wandb login``: it reads that file itself.
NETRC_SOURCE = "~/.netrc (wandb login)"


@dataclasses.dataclass(frozen=True)
class WandbApiKey:
    """A W&B API key and where it came from."""

    #: The key, when xdrl must hand it to W&B (read from a file); ``None``: W&B finds it itself.
    key: str | None = dataclasses.field(repr=False)
    #: ``WANDB_API_KEY``, ``~/.netrc (wandb login)`` or the key file's path.
    source: str


def wandb_api_key(logger: LoggerConfig | None = None) -> WandbApiKey | None:
    """The W&B API key of a run on this node, first found of:

    1. ``WANDB_API_KEY`` in this process's environment (a Kubernetes secret as pod env, ...);
    2. a ``wandb login`` entry in ``~/.netrc`` (W&B reads 1 and 2 itself: ``key`` is ``None``);
    3. the file ``logger.api_key_file``;
    4. the file named by ``XDRL_WANDB_API_KEY_FILE`` (what a launcher sets on every node).

    Returns ``None`` when there is none (W&B then logs offline in mode ``auto``).

    Raises:
        ConfigError: a key file is named (3 or 4) but cannot be read or is empty; the message
            names the key or variable and the path, never the content.

    Examples:
        >>> import tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "wandb-api-key"
        >>> _ = path.write_text("local-" + "0" * 40 + "\\n")
        >>> found = wandb_api_key(LoggerConfig("wandb", "auto", "p", None, None, None, api_key_file=str(path)))
        >>> found.source == str(path), found.key == "local-" + "0" * 40, "local-" in repr(found)
        (True, True, False)
    """
    if os.environ.get("WANDB_API_KEY"):
        return WandbApiKey(None, "WANDB_API_KEY")
    if _netrc_has_wandb():
        return WandbApiKey(None, NETRC_SOURCE)
    if logger is not None and logger.api_key_file:
        return WandbApiKey(
            read_secret_file(logger.api_key_file, "logger.api_key_file", "the W&B API key"), logger.api_key_file
        )
    if os.environ.get(WANDB_API_KEY_FILE_ENV):
        path = os.environ[WANDB_API_KEY_FILE_ENV]
        return WandbApiKey(read_secret_file(path, WANDB_API_KEY_FILE_ENV, "the W&B API key"), path)
    return None


def _netrc_has_wandb() -> bool:
    try:
        hosts = netrc.netrc().hosts
    except (OSError, netrc.NetrcParseError):
        return False
    return any("wandb" in host for host in hosts)


def wandb_api_key_configured(logger: LoggerConfig | None = None) -> bool:
    """Whether W&B could log online: a key in one of the places of :func:`wandb_api_key`."""
    return wandb_api_key(logger) is not None


def wandb_offline(config: ExperimentConfig) -> bool:
    mode = config.logger.mode
    if os.environ.get("WANDB_MODE") in ("offline", "dryrun", "disabled"):
        return True
    return mode == "offline" or (mode == "auto" and not wandb_api_key_configured(config.logger))


def public_config(config: ExperimentConfig) -> dict[str, Any]:
    """The resolved config as plain data, what W&B records: no secret, no secret's file, URL passwords as ``***``.

    Examples:
        >>> from xdrl.config import compose_config
        >>> from xdrl.config.schema import from_mapping
        >>> raw = compose_config(["experiment=cartpole_ppo", "logger=wandb", "logger.api_key_file=/etc/xdrl/key"])
        >>> "api_key_file" in public_config(from_mapping(ExperimentConfig, raw))["logger"]
        False
    """
    data = hide_passwords(to_dict(config))
    data["logger"].pop("api_key_file", None)  # where a node keeps its key is no result of the run
    return data


def make_wandb_logger(config: ExperimentConfig, output_dir: pathlib.Path, run_id: str) -> Logger:
    """The TorchRL W&B logger of a run; a key from a key file goes to W&B in memory (see :func:`wandb_api_key`).

    Raises:
        ConfigError: a key file is named but unreadable (before W&B starts).
    """
    from torchrl.record.loggers.wandb import WandbLogger

    logger_config = config.logger
    api_key = wandb_api_key(logger_config)
    # No console capture, git probing, system metrics, requirements or hardware metadata:
    # they cost seconds per run (per trial) and could carry what does not belong in W&B.
    settings: dict[str, Any] = {
        "console": "off",
        "disable_git": True,
        "x_disable_stats": True,
        "x_save_requirements": False,
        "x_disable_meta": True,
    }
    if api_key is not None and api_key.key is not None:
        settings["api_key"] = api_key.key
        # Where the key came from, never the key: the one line that tells an operator which file a node used.
        print(f"xdrl: W&B API key from {api_key.source} (run {run_id})", file=sys.stderr, flush=True)
    return WandbLogger(
        exp_name=logger_config.run_name or config.name,
        offline=wandb_offline(config),
        save_dir=str(output_dir),
        id=run_id,
        project=logger_config.project,
        group=logger_config.group or config.name,
        config=public_config(config),
        log_env_packages=False,
        settings=settings,
    )


def make_csv_logger(config: ExperimentConfig, output_dir: pathlib.Path) -> Logger:
    from torchrl.record.loggers.csv import CSVLogger

    return CSVLogger(exp_name="csv", log_dir=str(output_dir))
