"""The loggers behind the metric router: W&B (online or offline) and CSV."""

from __future__ import annotations

import netrc
import os
import pathlib
from typing import Any

from torchrl.record.loggers import Logger

from xdrl.config.schema import ExperimentConfig, to_dict


def wandb_api_key_configured() -> bool:
    """Whether W&B could log online: ``WANDB_API_KEY`` or a ``wandb login`` entry in ``~/.netrc``."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        hosts = netrc.netrc().hosts
    except (OSError, netrc.NetrcParseError):
        return False
    return any("wandb" in host for host in hosts)


def wandb_offline(config: ExperimentConfig) -> bool:
    mode = config.logger.mode
    if os.environ.get("WANDB_MODE") in ("offline", "dryrun", "disabled"):
        return True
    return mode == "offline" or (mode == "auto" and not wandb_api_key_configured())


def public_config(config: ExperimentConfig) -> dict[str, Any]:
    """The resolved config as plain data (what W&B and ``config.yaml`` record; it holds no secret)."""
    return to_dict(config)


def make_wandb_logger(config: ExperimentConfig, output_dir: pathlib.Path, run_id: str) -> Logger:
    from torchrl.record.loggers.wandb import WandbLogger

    logger_config = config.logger
    return WandbLogger(
        exp_name=logger_config.run_name or config.name,
        offline=wandb_offline(config),
        save_dir=str(output_dir),
        id=run_id,
        project=logger_config.project,
        group=logger_config.group or config.name,
        config=public_config(config),
        log_env_packages=False,
        # No console capture, git probing, system metrics, requirements or hardware metadata:
        # they cost seconds per run (per trial) and could carry what does not belong in W&B.
        settings={
            "console": "off",
            "disable_git": True,
            "x_disable_stats": True,
            "x_save_requirements": False,
            "x_disable_meta": True,
        },
    )


def make_csv_logger(config: ExperimentConfig, output_dir: pathlib.Path) -> Logger:
    from torchrl.record.loggers.csv import CSVLogger

    return CSVLogger(exp_name="csv", log_dir=str(output_dir))
