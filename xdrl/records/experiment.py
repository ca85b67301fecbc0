"""The files of an ``xdrl tune`` experiment directory: their names, formats and where they live.

The Tune side writes these files and the report and ``xdrl confirm`` read them; both
go through this module, so neither has to import the other to agree on a name. An
experiment lives at a *location*: a local directory, or a storage URI (``s3://``,
``gs://``, ``file://``) that ``pyarrow.fs`` opens. Tune's own files (the experiment
state, ``result.json``) are Ray's business and are read through Ray's API.

No Ray at module level: the report and the CLI's pre-flight checks import this
without starting anything.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from xdrl.records.atomic import atomic_write_text
from xdrl.records.redaction import hide_passwords

#: The base experiment config: what ``xdrl tune --resume``, ``xdrl report`` and ``xdrl confirm`` start from.
BASE_CONFIG = "xdrl_experiment.yaml"
#: The entry of :data:`BASE_CONFIG` holding the command-line overrides the experiment came from.
OVERRIDES_KEY = "_overrides"
#: Per trial directory: one JSON record per attempt (pid, node, device, where it resumed).
TRIAL_INFO = "trial_info.json"
#: Per trial directory of a population-based search: one JSON line per exploit of a donor's checkpoint.
PBT_EVENTS = "pbt_events.jsonl"
#: What ``xdrl confirm`` found, in its own experiment directory beside the search's.
CONFIRM_FILE = "confirm.json"
#: The confirmation experiment of search ``<name>`` is ``<name>-confirm``.
CONFIRM_SUFFIX = "-confirm"


def is_uri(location: str) -> bool:
    """Whether ``location`` is a storage URI rather than a local path.

    Examples:
        >>> is_uri("s3://bucket/runs"), is_uri("/data/runs"), is_uri("runs/tune")
        (True, False, False)
    """
    return "://" in location


def experiment_location(storage_path: str, experiment_name: str) -> str:
    """Where an experiment lives: ``<storage>/<name>``, a local directory or a URI.

    Examples:
        >>> experiment_location("s3://bucket/runs/", "sweep")
        's3://bucket/runs/sweep'
        >>> experiment_location("/data/runs", "sweep")
        '/data/runs/sweep'
    """
    if is_uri(storage_path):
        return f"{storage_path.rstrip('/')}/{experiment_name}"
    return str(pathlib.Path(storage_path) / experiment_name)


def write_experiment_file(location: str, name: str, text: str) -> None:
    """Write a small file into an experiment (local path or ``s3://``, ``gs://``, ``file://``).

    A local file is replaced atomically: a reader (``xdrl report`` on a running
    experiment) sees the old file or the new one, never half of it.

    Examples:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> write_experiment_file(folder + "/sweep", "note.txt", "hi")
        >>> read_experiment_file(folder + "/sweep", "note.txt"), read_experiment_file(folder, "none.txt")
        ('hi', None)
    """
    if not is_uri(location):
        atomic_write_text(pathlib.Path(location) / name, text)  # creates the directory too
        return
    import pyarrow.fs

    filesystem, root = pyarrow.fs.FileSystem.from_uri(location)
    filesystem.create_dir(root, recursive=True)
    with filesystem.open_output_stream(f"{root}/{name}") as handle:
        handle.write(text.encode())


def read_experiment_file(location: str, name: str) -> str | None:
    """The text of an experiment file, ``None`` when it is not there."""
    if not is_uri(location):
        path = pathlib.Path(location) / name
        return path.read_text() if path.is_file() else None
    import pyarrow.fs

    filesystem, root = pyarrow.fs.FileSystem.from_uri(location)
    if filesystem.get_file_info(f"{root}/{name}").type != pyarrow.fs.FileType.File:
        return None
    with filesystem.open_input_stream(f"{root}/{name}") as handle:
        return handle.read().decode()


def write_base_config(location: str, base: Mapping[str, Any], overrides: Sequence[str]) -> None:
    """Store the base config of an experiment with the overrides it came from.

    Every URL password in them is stored as ``***`` (:mod:`xdrl.records.redaction`): a study
    URL given with its password (``search.study.storage=postgresql://xdrl:pw@db/optuna``)
    is written ``postgresql://xdrl:***@db/optuna``, and ``xdrl tune --resume`` takes the
    password from ``XDRL_STUDY_PASSWORD`` or ``search.study.password_file`` again.
    """
    stored = hide_passwords({**base, OVERRIDES_KEY: list(overrides)})
    write_experiment_file(location, BASE_CONFIG, yaml.safe_dump(stored, sort_keys=False))


def read_base_config(location: str) -> tuple[dict[str, Any], list[str]] | None:
    """The base config of an experiment and its overrides; ``None`` when ``location`` is not an experiment.

    Examples:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> write_base_config(folder, {"seed": 1}, ["experiment=cartpole_ppo"])
        >>> read_base_config(folder)
        ({'seed': 1}, ['experiment=cartpole_ppo'])
        >>> read_base_config(folder + "/elsewhere") is None
        True
    """
    text = read_experiment_file(location, BASE_CONFIG)
    if text is None:
        return None
    base = yaml.safe_load(text)
    overrides = base.pop(OVERRIDES_KEY, [])
    return base, overrides


def quote_value(value: Any) -> str:
    """A value as a Hydra override writes it, quoted when Hydra's grammar would read it otherwise.

    Examples:
        >>> quote_value("/runs/a/policies/policy_step_00000010.pt")
        '/runs/a/policies/policy_step_00000010.pt'
        >>> quote_value("/my runs/p=1.pt")
        "'/my runs/p=1.pt'"
    """
    text = str(value)
    if re.fullmatch(r"[A-Za-z0-9_./:+-]+", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def with_override(overrides: Sequence[str], key: str, value: Any) -> list[str]:
    """``overrides`` with ``key`` set to ``value`` (replacing the override of ``key``, if any).

    Examples:
        >>> with_override(["experiment=cartpole_ppo", "init.policy=runs/a"], "init.policy", "/abs/p.pt")
        ['experiment=cartpole_ppo', 'init.policy=/abs/p.pt']
    """
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
    return [*kept, f"{key}={quote_value(value)}"]


def train_command(overrides: Sequence[str], sampled: Mapping[str, Any]) -> str:
    """The ``xdrl train`` command line of one configuration of a search.

    The search's own overrides (``search...``) are dropped: they mean nothing to a single run.

    Args:
        overrides: The command-line overrides of the search.
        sampled: The values the searcher chose for this configuration.

    Examples:
        >>> train_command(["experiment=cartpole_ppo", "search=optuna", "+search.seed=3"], {"algo.lr": 0.001})
        'xdrl train experiment=cartpole_ppo algo.lr=0.001'
    """
    kept = [o for o in overrides if not o.split("=", 1)[0].lstrip("+~").startswith("search")]
    return " ".join(["xdrl train", *kept, *(f"{k}={v}" for k, v in sampled.items())])


def confirm_directory(experiment_dir: str | pathlib.Path) -> pathlib.Path:
    """The directory of the confirmation experiment of the search in ``experiment_dir``.

    Examples:
        >>> confirm_directory("/data/runs/sweep").as_posix()
        '/data/runs/sweep-confirm'
    """
    experiment_dir = pathlib.Path(experiment_dir)
    return experiment_dir.parent / f"{experiment_dir.name}{CONFIRM_SUFFIX}"


def write_confirmation(experiment_dir: str | pathlib.Path, summary: Mapping[str, Any]) -> pathlib.Path:
    """Store what ``xdrl confirm`` found for the search in ``experiment_dir`` (atomically); returns the file."""
    directory = confirm_directory(experiment_dir)
    write_experiment_file(str(directory), CONFIRM_FILE, json.dumps(summary, indent=1))
    return directory / CONFIRM_FILE


def read_confirmation(experiment_dir: str | pathlib.Path) -> dict[str, Any] | None:
    """What ``xdrl confirm`` found for the search in ``experiment_dir``; ``None`` when it has not run.

    Examples:
        >>> import tempfile
        >>> search = pathlib.Path(tempfile.mkdtemp()) / "sweep"
        >>> read_confirmation(search) is None
        True
        >>> write_confirmation(search, {"candidates": []}).name
        'confirm.json'
        >>> read_confirmation(search)
        {'candidates': []}
    """
    text = read_experiment_file(str(confirm_directory(experiment_dir)), CONFIRM_FILE)
    return None if text is None else json.loads(text)
