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
    """The ``configs/`` of the xdrl code that runs.

    The presets travel with the code, so the package that is imported decides: a Ray
    job's working directory (first on ``sys.path``) brings its own ``configs/``, and
    an installed wheel carries its copy inside the package. In order:

    1. ``$XDRL_CONFIG_DIR``, when set: an explicit choice, used as given;
    2. ``xdrl/configs`` inside the imported package: a wheel's package data (in the
       repository it is a link to the top-level ``configs/``);
    3. ``configs/`` beside the imported package: a source tree whose link is missing
       (a checkout without symlinks, a copy of ``xdrl/`` and ``configs/``).

    Raises:
        ConfigError: ``$XDRL_CONFIG_DIR`` has no ``config.yaml``, or neither place does.

    Examples:
        >>> (config_dir() / "config.yaml").is_file()
        True
    """
    override = os.environ.get("XDRL_CONFIG_DIR")
    if override:
        if not (pathlib.Path(override) / "config.yaml").is_file():
            raise ConfigError("XDRL_CONFIG_DIR", override, "a directory holding xdrl's config.yaml")
        return pathlib.Path(override)
    package = pathlib.Path(__file__).resolve().parents[1]
    candidates = (package / "configs", package.parent / "configs")
    for candidate in candidates:
        if (candidate / "config.yaml").is_file():
            return candidate.resolve()
    raise ConfigError(
        "configs",
        " or ".join(str(c) for c in candidates),
        "xdrl's configs/ (with config.yaml) inside or beside the xdrl package: reinstall xdrl, or set XDRL_CONFIG_DIR",
    )


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


def with_new_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """A config stored by an earlier xdrl, completed with the keys added since, at their defaults.

    A run or an experiment keeps its resolved config; a key a later xdrl adds (say
    ``logger.api_key_file``) is missing from it, and the schema requires every key. The
    defaults come from the YAML files (their one place), composed for the stored algorithm
    and, for an experiment, the search group; a value the stored config has always wins.

    Examples:
        >>> completed = with_new_defaults({"algo": {"name": "ppo", "lr": 0.5}, "logger": {"backend": "none"}})
        >>> completed["algo"]["lr"], completed["algo"]["epochs"], completed["logger"]["backend"]
        (0.5, 4, 'none')
    """
    algo = (stored.get("algo") or {}).get("name", "ppo")
    overrides = [f"algo={algo}", *(["search=optuna"] if stored.get("search") else [])]
    return _fill(compose_config(overrides), stored)


def _fill(defaults: Any, stored: Any) -> Any:
    if not (isinstance(defaults, dict) and isinstance(stored, dict)):
        return stored
    filled = {key: _fill(defaults[key], value) if key in defaults else value for key, value in stored.items()}
    filled.update({key: value for key, value in defaults.items() if key not in stored})
    return filled
