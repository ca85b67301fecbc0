"""The files of a run directory that other commands read back: its config and its policy files.

A run directory is what ``xdrl train`` makes and what each Tune trial writes into::

    config.yaml                    the resolved, validated config the run trained with
    policies/<prefix>_step_N.pt    policy checkpoints (PolicyCheckpointHook), N = trainer iterations
    checkpoints/  metrics.jsonl  wandb/ ...

``xdrl eval`` and warm starts (``init.policy``) find policies here.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

import yaml

from xdrl.records.atomic import atomic_write_text

CONFIG_FILE = "config.yaml"
POLICY_DIR = "policies"
#: ``{prefix}_step_{n:08d}.pt``, the name PolicyCheckpointHook gives its files.
_POLICY_NAME = re.compile(r".+_step_(\d+)\.pt")


class PolicyFileError(ValueError):
    """A path that is not, or does not lead to, a readable policy checkpoint (the message says why)."""


def write_run_config(directory: str | pathlib.Path, config: dict[str, Any]) -> pathlib.Path:
    """Store the run's resolved config as ``config.yaml`` (atomically); returns the file."""
    path = pathlib.Path(directory) / CONFIG_FILE
    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))
    return path


def read_run_config(directory: str | pathlib.Path) -> dict[str, Any] | None:
    """The stored config of the run in ``directory`` (``None``: no ``config.yaml`` there)."""
    path = pathlib.Path(directory) / CONFIG_FILE
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def policy_step(path: pathlib.Path) -> int | None:
    """The iteration number in a policy file's name (``None``: not a policy file name).

    Examples:
        >>> policy_step(pathlib.Path("policies/policy_step_00000040.pt"))
        40
        >>> policy_step(pathlib.Path("policies/.policy_step_00000040.pt.tmp")) is None
        True
    """
    match = _POLICY_NAME.fullmatch(path.name)
    return int(match.group(1)) if match and not path.name.startswith(".") else None


def policy_files(run_dir: str | pathlib.Path) -> list[pathlib.Path]:
    """The run's policy files, oldest first."""
    directory = pathlib.Path(run_dir) / POLICY_DIR
    if not directory.is_dir():
        return []
    found = [(policy_step(path), path) for path in directory.iterdir() if path.is_file()]
    return [path for step, path in sorted((s, p) for s, p in found if s is not None)]


def resolve_policy(path: str | pathlib.Path) -> pathlib.Path:
    """The policy file ``path`` names: the file itself, or a run directory's newest policy file (absolute).

    Raises:
        PolicyFileError: nothing there, or a directory without policy files.
    """
    path = pathlib.Path(path).expanduser().resolve()
    if path.is_file():
        return path
    if path.is_dir():
        files = policy_files(path)
        if files:
            return files[-1]
        raise PolicyFileError(f"{path} holds no policy checkpoint ({POLICY_DIR}/<prefix>_step_N.pt)")
    raise PolicyFileError(f"{path} does not exist")


def run_directory_of(policy_file: pathlib.Path) -> pathlib.Path | None:
    """The run directory a policy file belongs to (``None``: it is not inside one's ``policies/``)."""
    run_dir = policy_file.parent.parent
    if policy_file.parent.name == POLICY_DIR and (run_dir / CONFIG_FILE).is_file():
        return run_dir
    return None


def read_policy(path: pathlib.Path) -> dict[str, Any]:
    """A policy checkpoint's payload, loaded with ``weights_only=True`` onto the CPU.

    Raises:
        PolicyFileError: the file is not a torch file, or holds no ``policy_state_dict``.
    """
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated, foreign or unsafe file: torch raises many kinds
        raise PolicyFileError(f"{path} is not a readable policy checkpoint ({type(error).__name__})") from error
    if not isinstance(payload, dict) or not isinstance(payload.get("policy_state_dict"), dict):
        raise PolicyFileError(f"{path} is not a policy checkpoint of xdrl (no policy_state_dict)")
    return payload
