"""Read a Tune + Optuna experiment directory without changing it (finished, interrupted or running)."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import tempfile
import time
from typing import Any

import yaml

from xdrl.builder.metrics import read_metrics_file
from xdrl.config.errors import ConfigError
from xdrl.distributed.tuner import BASE_CONFIG


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


#: How often, and how far apart, ``tune_state`` reads a state file that does not parse. Tune rewrites
#: ``experiment_state-*.json`` in place, so a report on a running experiment can catch it half written;
#: the next save completes it within milliseconds, the window here is ample on a loaded machine.
STATE_READ_ATTEMPTS = 10
STATE_READ_DELAY_S = 0.1


class ExperimentStateError(json.JSONDecodeError):
    """Tune's experiment state file never parsed, however long it was waited for.

    A ``json.JSONDecodeError`` so that callers which treat an unreadable state as "Tune is writing
    it right now" (polling tests, for one) keep working unchanged.
    """

    def __init__(self, msg: str, doc: str, pos: int, path: pathlib.Path | None = None) -> None:
        super().__init__(msg, doc, pos)
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:  # JSONDecodeError's own drops ``path``
        return self.__class__, (self.msg, self.doc, self.pos, self.path)


def _read_newest_state(directory: pathlib.Path, attempts: int, delay: float) -> dict[str, Any] | None:
    """The newest ``experiment_state-*.json`` of ``directory``, parsed; None when there is none yet."""
    error: json.JSONDecodeError | None = None
    path = None
    for attempt in range(attempts):
        if attempt:
            time.sleep(delay)
        # Listed again on every attempt: Tune may have started a newer file (or removed this one) meanwhile.
        states = sorted(directory.glob("experiment_state-*.json"))
        if not states:
            return None
        path = states[-1]
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            continue
        except json.JSONDecodeError as torn:
            error = torn
    if error is None:  # every file listed vanished before it could be read
        return None
    raise ExperimentStateError(
        f"Tune's experiment state {path} is not valid JSON after {attempts} reads {delay:g} s apart "
        f"(torn by an interrupted write?): {error.msg}",
        error.doc,
        error.pos,
        path,
    )


def tune_state(
    directory: pathlib.Path, *, attempts: int = STATE_READ_ATTEMPTS, delay: float = STATE_READ_DELAY_S
) -> dict[str, dict[str, Any]]:
    """Trial id -> status, config, directory and failures, from Tune's newest experiment state.

    Args:
        directory: The experiment directory.
        attempts: Reads of a state file that does not parse before giving up.
        delay: Seconds between those reads.

    Raises:
        ExperimentStateError: when the newest state file still does not parse after ``attempts`` reads.
    """
    data = _read_newest_state(pathlib.Path(directory), attempts, delay)
    if data is None:
        return {}
    trials = {}
    for entry in data.get("trial_data", []):
        trial = json.loads(entry[0])
        runtime = json.loads(entry[1]) if len(entry) > 1 and isinstance(entry[1], str) else {}
        trials[trial["trial_id"]] = {
            "status": trial.get("status", "UNKNOWN"),
            "config": trial.get("config", {}),
            "dirname": trial.get("relative_logdir") or trial.get("custom_dirname"),
            "failures": runtime.get("num_failures", 0),
        }
    return trials


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

    An ``optuna.db`` in the experiment directory is copied to a temporary directory and read from
    there (the experiment's file is never opened); the copy is deleted before this returns.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_name = (search.get("study") or {}).get("name") or name
    storage = (search.get("study") or {}).get("storage")
    if storage is not None:
        return _snapshot_study(storage, study_name)
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
        ConfigError: when the directory is not one (no ``xdrl_experiment.yaml``).
    """
    directory = pathlib.Path(directory).resolve()
    config_path = directory / BASE_CONFIG
    if not config_path.is_file():
        raise ConfigError("DIR", str(directory), f"an experiment directory of xdrl tune (with {BASE_CONFIG})")
    base = yaml.safe_load(config_path.read_text())
    overrides = base.pop("_overrides", [])
    state = tune_state(directory)
    trials = []
    seen = set()
    for trial_dir in sorted(p for p in directory.iterdir() if (p / "params.json").exists()):
        results = read_metrics_file(trial_dir / "result.json")
        params = json.loads((trial_dir / "params.json").read_text())
        trial_id = results[-1]["trial_id"] if results else trial_dir.name.split("_")[2]
        info = state.get(trial_id, {})
        status = info.get("status") or ("RUNNING" if results else "PENDING")
        rows = read_metrics_file(trial_dir / "metrics.jsonl")
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
