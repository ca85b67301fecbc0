"""Read a Tune + Optuna experiment directory without changing it (finished, interrupted or running).

Everything comes through readers of its own owners: the experiment's files through
:mod:`xdrl.records.experiment`, each run's JSON-lines records through
:mod:`xdrl.records.lineage`, Tune's experiment state through Ray's ``ExperimentAnalysis``
(:mod:`xdrl.report.tune_state`), the Optuna study through Optuna.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import tempfile
from typing import Any

from xdrl.config.credentials import study_storage
from xdrl.config.errors import ConfigError
from xdrl.records.experiment import BASE_CONFIG, read_base_config
from xdrl.records.lineage import METRICS_FILE, TUNE_RESULT_FILE, read_jsonl
from xdrl.report.tune_state import tune_state


@dataclasses.dataclass
class Trial:
    """One trial as its files tell it."""

    trial_id: str
    name: str
    directory: pathlib.Path | None
    status: str
    params: dict[str, Any]
    results: list[dict[str, Any]]
    failures: int
    #: The trial's metrics.jsonl rows: the metrics of each iteration only (Tune results carry
    #: evaluation metrics forward between evaluations).
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def frames(self) -> int:
        return int(self.results[-1].get("counters/total_frames", 0)) if self.results else 0

    @property
    def wall_time(self) -> float:
        return float(self.results[-1].get("time_total_s", 0.0)) if self.results else 0.0

    def values(self, metric: str) -> list[tuple[int, float]]:
        """(frames, value) of every iteration that produced ``metric``, in order.

        From ``metrics.jsonl`` when the trial directory has it; otherwise from the
        Tune results, where a value repeated from the previous result counts once.
        """
        if self.rows:
            return [
                (int(r.get("counters/total_frames", 0)), float(r[metric]))
                for r in self.rows
                if r.get(metric) is not None
            ]
        points, last = [], None
        for row in self.results:
            if row.get(metric) is not None:
                if last is None or float(row[metric]) != last:
                    points.append((int(row.get("counters/total_frames", 0)), float(row[metric])))
                last = float(row[metric])
        return points

    def last(self, metric: str) -> float | None:
        values = self.values(metric)
        return values[-1][1] if values else None

    def best(self, metric: str, mode: str) -> float | None:
        values = [v for _, v in self.values(metric)]
        if not values:
            return None
        return max(values) if mode == "max" else min(values)


@dataclasses.dataclass
class ExperimentData:
    """Everything ``xdrl report`` reads."""

    directory: pathlib.Path
    name: str
    base: dict[str, Any]
    overrides: list[str]
    trials: list[Trial]
    study: Any | None
    finished: bool

    @property
    def search(self) -> dict[str, Any]:
        return self.base["search"]

    @property
    def metrics(self) -> list[str]:
        metric = self.search["metric"]
        return metric if isinstance(metric, list) else [metric]

    @property
    def modes(self) -> list[str]:
        mode = self.search["mode"]
        return mode if isinstance(mode, list) else [mode]


def _snapshot_study(url: str, study_name: str) -> Any | None:
    """An in-memory copy of the study stored at ``url``; the database connection is closed on return."""
    import optuna

    storage = optuna.storages.RDBStorage(url)
    try:
        snapshot = optuna.storages.InMemoryStorage()
        optuna.copy_study(from_study_name=study_name, from_storage=storage, to_storage=snapshot)
        return optuna.load_study(study_name=study_name, storage=snapshot)
    except KeyError:  # no such study (yet)
        return None
    finally:
        # Closed here, not by the garbage collector: the caller deletes the SQLite copy next.
        storage.remove_session()
        storage.engine.dispose()


def _load_study(directory: pathlib.Path, search: dict[str, Any], name: str) -> Any | None:
    """The Optuna study, as an in-memory snapshot.

    A database given by ``search.study.storage`` is opened with the password of this node
    (``XDRL_STUDY_PASSWORD`` or ``search.study.password_file``), as ``xdrl tune --resume`` opens it.
    An ``optuna.db`` in the experiment directory is copied to a temporary directory and read from
    there (the experiment's file is never opened); the copy is deleted before this returns.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = search.get("study") or {}
    study_name = study.get("name") or name
    if study.get("storage") is not None:
        # The stored URL has its password as ***: the password comes from this node, in memory only.
        url = study_storage(study["storage"], study.get("password_file"), default="").url
        return _snapshot_study(url, study_name)
    database = directory / "optuna.db"
    if not database.exists():
        return None
    with tempfile.TemporaryDirectory(prefix="xdrl-report-") as scratch:
        copy = pathlib.Path(scratch) / "optuna.db"
        shutil.copy2(database, copy)
        return _snapshot_study(f"sqlite:///{copy}", study_name)


def load_experiment(directory: str | pathlib.Path) -> ExperimentData:
    """Read an ``xdrl tune`` experiment directory.

    Raises:
        ConfigError: when the directory is not one (no ``xdrl_experiment.yaml``), or its study's
            database needs a password this node does not have.
    """
    directory = pathlib.Path(directory).resolve()
    stored = read_base_config(str(directory))
    if stored is None:
        raise ConfigError("DIR", str(directory), f"an experiment directory of xdrl tune (with {BASE_CONFIG})")
    base, overrides = stored
    state = tune_state(directory)
    trials = []
    seen = set()
    # Results come from each trial's result.json, not from ExperimentAnalysis.trial_dataframes: those
    # hold only the trials whose last result the saved state already has (Tune saves it every few
    # seconds, result.json every iteration), and a torn last line (a trial writing right now) costs
    # the whole trial there, one line here. Trials get a directory before the saved state lists them.
    for trial_dir in sorted(p for p in directory.iterdir() if (p / "params.json").exists()):
        results = read_jsonl(trial_dir / TUNE_RESULT_FILE)
        params = json.loads((trial_dir / "params.json").read_text())
        trial_id = results[-1]["trial_id"] if results else trial_dir.name.split("_")[2]
        info = state.get(trial_id, {})
        status = info.get("status") or ("RUNNING" if results else "PENDING")
        rows = read_jsonl(trial_dir / METRICS_FILE)
        trials.append(
            Trial(trial_id, trial_dir.name, trial_dir, status, params, results, info.get("failures", 0), rows)
        )
        seen.add(trial_id)
    for trial_id, info in state.items():  # trials Tune knows that have not written anything yet
        if trial_id not in seen:
            trials.append(Trial(trial_id, info.get("dirname") or trial_id, None, info["status"], info["config"], [], 0))
    finished = bool(state) and all(info["status"] in ("TERMINATED", "ERROR") for info in state.values())
    study = _load_study(directory, base["search"], directory.name)
    return ExperimentData(directory, directory.name, base, overrides, trials, study, finished)
