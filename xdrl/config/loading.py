"""Compose an experiment config with Hydra and turn it into validated, typed objects."""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Sequence
from typing import Any

from xdrl.config.errors import ConfigError

#: Config groups a user picks with ``group=option``.
GROUPS = ("env", "algo", "collector", "hooks", "checkpoint", "logger", "resources", "experiment", "search")


def config_dir() -> pathlib.Path:
    """The ``configs/`` directory: ``$XDRL_CONFIG_DIR``, else the one beside the ``xdrl`` package."""
    override = os.environ.get("XDRL_CONFIG_DIR")
    path = pathlib.Path(override) if override else pathlib.Path(__file__).resolve().parents[2] / "configs"
    if not (path / "config.yaml").is_file():
        raise ConfigError("XDRL_CONFIG_DIR", str(path), "a directory holding xdrl's config.yaml")
    return path


def group_options(group: str, directory: pathlib.Path | None = None) -> list[str]:
    """The options of a config group (file names without ``.yaml``)."""
    root = (directory or config_dir()) / group
    return sorted(p.stem for p in root.glob("*.yaml")) if root.is_dir() else []


def _compose(overrides: Sequence[str], directory: pathlib.Path) -> Any:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(directory), version_base=None):
        return compose(config_name="config", overrides=list(overrides))


def _keys_at(config: Any, dotted: str) -> list[str]:
    from omegaconf import OmegaConf

    parent = OmegaConf.select(config, dotted) if dotted else config
    return sorted(str(k) for k in parent.keys()) if parent is not None and hasattr(parent, "keys") else []


def _translate(error: Exception, overrides: Sequence[str], directory: pathlib.Path) -> ConfigError:
    """A Hydra composition error as one ``ConfigError`` line."""
    from hydra.errors import MissingConfigException, OverrideParseException

    message = str(error)
    by_key = {o.split("=", 1)[0].lstrip("+~"): o.split("=", 1)[1] if "=" in o else None for o in overrides}
    missing = re.search(r"Could not find '([\w-]+)/([^']+)'", message)
    if isinstance(error, MissingConfigException) and missing:
        group, option = missing.groups()
        return ConfigError(group, option, "one of " + ", ".join(group_options(group, directory)))
    unknown = re.search(r"Could not override '([^']+)'", message)
    if unknown:
        key = unknown.group(1)
        parent = key.rpartition(".")[0]
        rest = [o for o in overrides if not o.startswith(f"{key}=")]
        keys = _keys_at(_compose(rest, directory), parent)
        return ConfigError(key, by_key.get(key), "one of the keys " + ", ".join(keys))
    if isinstance(error, OverrideParseException):
        bad = re.search(r"Error parsing override '([^']*)'", message)
        text = bad.group(1) if bad else message.splitlines()[0]
        return ConfigError("override", text, "key=value (Hydra override syntax)")
    return ConfigError("overrides", " ".join(overrides), message.splitlines()[0])


def compose_config(overrides: Sequence[str] = (), directory: pathlib.Path | None = None) -> dict[str, Any]:
    """Compose ``configs/config.yaml`` with Hydra overrides into a plain, resolved dict.

    Raises:
        ConfigError: an unknown group option, key or malformed override.
    """
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    directory = directory or config_dir()
    try:
        composed = _compose(overrides, directory)
        return OmegaConf.to_container(composed, resolve=True)
    except (HydraException, OmegaConfBaseException) as error:
        raise _translate(error, overrides, directory) from error
