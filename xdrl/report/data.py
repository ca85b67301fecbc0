"""Read a Tune + Optuna experiment directory without changing it (finished, interrupted or running)."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import tempfile
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


def tune_state(directory: pathlib.Path) -> dict[str, dict[str, Any]]:
    """Trial id -> status, config, directory and failures, from Tune's newest experiment state."""
    states = sorted(directory.glob("experiment_state-*.json"))
    if not states:
        return {}
    data = json.loads(states[-1].read_text())
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


def _load_study(directory: pathlib.Path, search: dict[str, Any], name: str) -> Any | None:
    """The Optuna study, read from a copy of the SQLite file (the experiment's file is never opened)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_name = (search.get("study") or {}).get("name") or name
    storage = (search.get("study") or {}).get("storage")
    if storage is None:
        database = directory / "optuna.db"
        if not database.exists():
            return None
        copy = pathlib.Path(tempfile.mkdtemp(prefix="xdrl-report-")) / "optuna.db"
        shutil.copy2(database, copy)
        storage = f"sqlite:///{copy}"
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return None


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
