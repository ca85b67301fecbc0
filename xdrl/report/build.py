"""Assemble ``DIR/report/``: the trials table, the Pareto front, the figures and ``report.md``.

The text of the report is :mod:`xdrl.report.render`'s; this module gathers what it shows.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any

import numpy as np

from xdrl.records.atomic import atomic_write_text
from xdrl.records.experiment import read_confirmation, train_command
from xdrl.report import figures, population
from xdrl.report.data import ExperimentData, Trial, load_experiment
from xdrl.report.importances import param_importances
from xdrl.report.pareto import hypervolume, pareto_mask
from xdrl.report.render import render_markdown, terminal_summary

__all__ = ["Report", "build_report", "param_importances", "terminal_summary"]


@dataclasses.dataclass
class Report:
    """What ``xdrl report`` computed (also what the tests check)."""

    data: ExperimentData
    rows: list[dict[str, Any]]  # the trials table, sorted by the search metric
    best: Trial | None
    best_command: str | None
    figures: dict[str, pathlib.Path]
    notes: list[str]
    pareto: list[dict[str, Any]]  # multi-objective: the non-dominated trials
    hypervolume: float | None
    markdown: pathlib.Path
    #: What ``xdrl confirm`` found, when it ran on this search.
    confirmation: dict[str, Any] | None = None
    #: Optuna's parameter importances: metric -> parameter -> importance, most important first.
    importances: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    #: The importance evaluator that computed them (a readable name, e.g. "PED-ANOVA").
    importance_evaluator: str | None = None
    #: A population-based search (PBT, PB2): its schedule figure, lineage, final population and
    #: the best member's schedule (see :func:`_population`); ``None`` for other searches.
    population: dict[str, Any] | None = None


def _sort_key(value: float | None, mode: str) -> float:
    if value is None:
        return math.inf
    return -value if mode == "max" else value


def _trials_table(data: ExperimentData) -> tuple[list[dict[str, Any]], Trial | None]:
    metric, mode = data.metrics[0], data.modes[0]
    rows = []
    for trial in data.trials:
        rows.append(
            {
                "trial": trial.trial_id,
                "status": trial.status,
                **{f"param {k}": v for k, v in trial.params.items()},
                "frames": trial.frames,
                **{f"best {m}": trial.best(m, mo) for m, mo in zip(data.metrics, data.modes, strict=True)},
                **{f"last {m}": trial.last(m) for m in data.metrics},
                "failures": trial.failures,
                "wall s": round(trial.wall_time, 1),
            }
        )
    rows.sort(key=lambda r: _sort_key(r[f"best {metric}"], mode))
    by_id = {t.trial_id: t for t in data.trials}
    best = by_id[rows[0]["trial"]] if rows and rows[0][f"best {metric}"] is not None else None
    return rows, best


def best_trial(data: ExperimentData) -> Trial | None:
    """The trial the report calls best: the best value of the (first) search metric in its mode."""
    return _trials_table(data)[1]


def _study_figures(
    data: ExperimentData, out: pathlib.Path, made: dict[str, pathlib.Path], notes: list[str]
) -> tuple[str | None, dict[str, dict[str, float]]]:
    """The Optuna study's figures (added to ``made``); returns the importance evaluator and the importances."""
    study = data.study
    if study is None:
        notes.append("no Optuna study (searcher other than optuna, or not created yet)")
        return None, {}
    import optuna

    metric, mode = data.metrics[0], data.modes[0]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    multi = len(study.directions) > 1
    values = [
        (t.values[0] if multi else t.value) if t.state == optuna.trial.TrialState.COMPLETE else None
        for t in study.trials
    ]
    if complete:
        made["optimization_history"] = figures.optimization_history(
            values, mode, metric, out / "optimization_history.png"
        )
    try:
        evaluator, importances = param_importances(study, data.metrics)
    except (RuntimeError, ValueError) as error:
        notes.append(f"no parameter importances: {error}")
        return None, {}
    made["param_importances"] = figures.param_importances(
        importances, data.modes, evaluator, out / "param_importances.png"
    )
    return evaluator, importances


def _pareto_front(
    data: ExperimentData, out: pathlib.Path, made: dict[str, pathlib.Path], notes: list[str]
) -> tuple[list[dict[str, Any]], float | None]:
    """Multi-objective: the non-dominated trials (by their last values) and their hypervolume."""
    finished = [t for t in data.trials if all(t.last(m) is not None for m in data.metrics)]
    if len(data.metrics) < 2 or not finished:
        return [], None
    points = np.array([[t.last(m) for m in data.metrics] for t in finished])
    mask = pareto_mask(points, data.modes)
    pareto = [
        {"trial": t.trial_id, **dict(zip(data.metrics, p, strict=True)), **t.params}
        for t, p, m in zip(finished, points, mask, strict=True)
        if m
    ]
    volume = None
    reference = data.base["env"].get("reference_point")
    if reference is not None:
        volume = hypervolume(points[mask], reference, data.modes)
    else:
        notes.append("no env.reference_point in the config: no hypervolume")
    if len(data.metrics) == 2:
        made["pareto_front"] = figures.pareto_front(points, mask, data.metrics, reference, out / "pareto_front.png")
    return pareto, volume


def _population(
    data: ExperimentData, out: pathlib.Path, made: dict[str, pathlib.Path], notes: list[str]
) -> dict[str, Any]:
    """PBT/PB2: the members' schedules (figure), every exploit, the final population, the best member's schedule.

    The best member is the one with the best *final* search metric (what PBT ranks by); its
    schedule is the one ``xdrl confirm`` re-runs, and its ``xdrl train`` line sets it.
    """
    keys = population.mutated_keys(data)
    ranked = population.ranked_members(data)
    best = ranked[0] if ranked else None
    exploits = {t.trial_id: population.events(t) for t in data.trials}
    found: dict[str, Any] = {
        "keys": keys,
        "lineage": population.lineage_table(data, keys),
        "final": population.final_population(data, keys),
        "best": None,
        "schedule": None,
        "command": None,
    }
    if any(f"hparams/{k}" in row for t in data.trials for row in t.rows for k in keys):
        spaces = population.parse_dimensions(data.search["pbt"]["mutations"], "search.pbt.mutations")
        made["pbt_schedule"] = figures.pbt_schedule(
            data.trials,
            keys,
            exploits,
            best.trial_id if best else None,
            out / "pbt_schedule.png",
            log_keys=[d.key for d in spaces if d.type == "loguniform"],
        )
    else:
        notes.append("no member has logged its hparams/* rows yet: no schedule figure")
    if best is not None:
        schedule = population.lineage_schedule(data, best.trial_id, keys)
        found.update(
            best=best.trial_id,
            schedule=schedule,
            command=population.schedule_command(data.overrides, schedule, keys),
        )
    return found


def build_report(directory: str | pathlib.Path) -> Report:
    """Read the experiment in ``directory`` and write ``directory/report/`` (the experiment is not touched).

    Raises:
        ConfigError: when ``directory`` is not an experiment directory of ``xdrl tune``.
    """
    data = load_experiment(directory)
    out = data.directory / "report"
    out.mkdir(exist_ok=True)
    metric = data.metrics[0]
    rows, best = _trials_table(data)
    notes: list[str] = []
    made: dict[str, pathlib.Path] = {}
    command = train_command(data.overrides, best.params) if best is not None else None
    if any(t.values(metric) for t in data.trials):
        made["learning_curves"] = figures.learning_curves(data.trials, metric, best, out / "learning_curves.png")
    else:
        notes.append(f"no trial has reported {metric} yet: no learning curves")
    evaluator, importances = _study_figures(data, out, made, notes)
    pareto, volume = _pareto_front(data, out, made, notes)
    found = _population(data, out, made, notes) if population.is_population_based(data) else None
    report = Report(
        data,
        rows,
        best,
        command,
        made,
        notes,
        pareto,
        volume,
        out / "report.md",
        read_confirmation(data.directory),
        importances,
        evaluator,
        found,
    )
    atomic_write_text(report.markdown, render_markdown(report))
    return report
