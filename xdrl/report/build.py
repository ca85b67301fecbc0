"""Assemble ``DIR/report/``: tables, figures, ``report.md``, and the terminal summary."""

from __future__ import annotations

import dataclasses
import math
import pathlib
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from xdrl.builder.checkpointing import atomic_write_text
from xdrl.distributed.tuner import TunePlan, train_command
from xdrl.report import figures
from xdrl.report.data import ExperimentData, Trial, load_experiment
from xdrl.report.pareto import hypervolume, pareto_mask


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


#: Readable names of Optuna's importance evaluators (class name -> label of the figure and report.md).
EVALUATOR_NAMES = {
    "PedAnovaImportanceEvaluator": "PED-ANOVA",
    "FanovaImportanceEvaluator": "fANOVA",
    "MeanDecreaseImpurityImportanceEvaluator": "mean decrease impurity",
}
#: The share of the completed trials that counts as "good" for the importances (PED-ANOVA's default).
TOP_QUANTILE = 0.1


def param_importances(study: Any, metrics: Sequence[str]) -> tuple[str, dict[str, dict[str, float]]]:
    """Optuna's parameter importances for reaching good values of each objective, in its direction.

    PED-ANOVA (Optuna 5's default evaluator, passed explicitly so that the label names the evaluator
    that ran) scores how differently each parameter is distributed among the best ``TOP_QUANTILE`` of
    the completed trials than among all of them. Given a ``target`` it takes LOW values as the good ones whatever the
    study's direction, so a maximised objective is negated: "important" then always means important
    for good values of that objective. A multi-objective study gets one ranking per objective (Optuna's
    own multi-objective default ranks for the Pareto front as a whole, which names no objective).

    Args:
        study: The Optuna study (single- or multi-objective).
        metrics: The objectives' names, in the order of ``study.directions``.

    Returns:
        The evaluator's readable name, and metric -> parameter -> importance (each metric's importances
        sum to 1, most important first).

    Raises:
        ValueError: when fewer than two trials completed with finite values.

    Examples:
        >>> import optuna
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
        >>> study.optimize(lambda t: t.suggest_float("x", 0, 1) + 0 * t.suggest_float("noise", 0, 1), n_trials=60)
        >>> name, importances = param_importances(study, ["score"])
        >>> name, next(iter(importances["score"]))
        ('PED-ANOVA', 'x')
    """
    import optuna

    if len(metrics) != len(study.directions):
        raise ValueError(
            f"{len(metrics)} metric names {list(metrics)} for a study of {len(study.directions)} objectives"
        )
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if all(math.isfinite(v) for v in t.values)
    ]
    if len(complete) < 2:
        raise ValueError(f"{len(complete)} completed trial(s) with finite values, at least 2 are needed")
    evaluator = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=TOP_QUANTILE)
    importances = {}
    for index, (metric, direction) in enumerate(zip(metrics, study.directions, strict=True)):
        sign = -1.0 if direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        with warnings.catch_warnings():
            # Its reminder that a target is minimised: the sign above is the answer to it.
            warnings.filterwarnings("ignore", message=".*achieve low `target` values")
            importances[metric] = optuna.importance.get_param_importances(
                study, evaluator=evaluator, target=lambda t, i=index, s=sign: s * t.values[i]
            )
    name = type(evaluator).__name__
    return EVALUATOR_NAMES.get(name, name), importances


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return lines + ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]


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


def _plan_stub(data: ExperimentData) -> TunePlan:
    return TunePlan(data.base, None, [], data.name, str(data.directory.parent), data.directory, 0, data.overrides)


def build_report(directory: str | pathlib.Path) -> Report:
    """Read the experiment in ``directory`` and write ``directory/report/`` (the experiment is not touched)."""
    data = load_experiment(directory)
    out = data.directory / "report"
    out.mkdir(exist_ok=True)
    metric, mode = data.metrics[0], data.modes[0]
    rows, best = _trials_table(data)
    notes: list[str] = []
    made: dict[str, pathlib.Path] = {}
    evaluator: str | None = None
    importances: dict[str, dict[str, float]] = {}
    command = train_command(_plan_stub(data), best.params) if best is not None else None

    if any(t.values(metric) for t in data.trials):
        made["learning_curves"] = figures.learning_curves(data.trials, metric, best, out / "learning_curves.png")
    else:
        notes.append(f"no trial has reported {metric} yet: no learning curves")

    study = data.study
    if study is None:
        notes.append("no Optuna study (searcher other than optuna, or not created yet)")
    else:
        import optuna

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
            made["param_importances"] = figures.param_importances(
                importances, data.modes, evaluator, out / "param_importances.png"
            )
        except (RuntimeError, ValueError) as error:
            notes.append(f"no parameter importances: {error}")

    pareto, volume = [], None
    if len(data.metrics) > 1:
        finished = [t for t in data.trials if all(t.last(m) is not None for m in data.metrics)]
        if finished:
            points = np.array([[t.last(m) for m in data.metrics] for t in finished])
            mask = pareto_mask(points, data.modes)
            pareto = [
                {"trial": t.trial_id, **dict(zip(data.metrics, p, strict=True)), **t.params}
                for t, p, m in zip(finished, points, mask, strict=True)
                if m
            ]
            reference = data.base["env"].get("reference_point")
            if reference is not None:
                volume = hypervolume(points[mask], reference, data.modes)
            else:
                notes.append("no env.reference_point in the config: no hypervolume")
            if len(data.metrics) == 2:
                made["pareto_front"] = figures.pareto_front(
                    points, mask, data.metrics, reference, out / "pareto_front.png"
                )

    from xdrl.distributed.confirm import load_summary

    confirmation = load_summary(data.directory)
    report = Report(
        data, rows, best, command, made, notes, pareto, volume, out / "report.md", confirmation, importances, evaluator
    )
    atomic_write_text(report.markdown, render_markdown(report))
    return report


def _importances_text(report: Report) -> str:
    objectives = ", ".join(
        f"`{m}` ({'higher' if mode == 'max' else 'lower'} is better)"
        for m, mode in zip(report.data.metrics, report.data.modes, strict=True)
    )
    tops = "; ".join(f"`{m}`: `{next(iter(v))}`" for m, v in report.importances.items() if v)
    return (
        f"{report.importance_evaluator}: how much reaching the best {TOP_QUANTILE:.0%} of the completed trials "
        f"depends on each parameter, per objective in its own direction: {objectives}. Most important: {tops}."
    )


def render_markdown(report: Report) -> str:
    data = report.data
    metric, mode = data.metrics[0], data.modes[0]
    state = "finished" if data.finished else "not finished (interrupted or running): what is there so far"
    lines = [
        f"# Experiment `{data.name}`",
        "",
        f"- directory: `{data.directory}`",
        f"- state: {state}",
        f"- search: {data.search['searcher']} over {', '.join(f'`{k}`' for k in data.trials[0].params) if data.trials else '-'}"
        f", scheduler {data.search['scheduler']}, {len(data.trials)} of {data.search['num_samples']} trials",
        f"- metric: `{', '.join(data.metrics)}` ({', '.join(data.modes)})",
        "",
        "## Trials",
        "",
    ]
    if report.rows:
        headers = list(report.rows[0])
        lines += _table(headers, [[row.get(h) for h in headers] for row in report.rows])
    lines += ["", "## Best configuration", ""]
    if report.best is not None:
        lines += [
            f"Trial `{report.best.trial_id}`: best `{metric}` = {_fmt(report.best.best(metric, mode))}.",
            "",
            "```bash",
            report.best_command or "",
            "```",
        ]
    else:
        lines.append(f"No trial has reported `{metric}` yet.")
    for key, title in (
        ("learning_curves", "Learning curves"),
        ("optimization_history", "Optimisation history (Optuna)"),
        ("param_importances", f"Parameter importances (Optuna, {report.importance_evaluator})"),
        ("pareto_front", "Pareto front"),
    ):
        if key in report.figures:
            lines += ["", f"## {title}", "", f"![{title}]({report.figures[key].name})"]
        if key == "param_importances" and report.importances:
            lines += ["", _importances_text(report)]
    if report.pareto:
        lines += ["", "## Pareto front of the trials", ""]
        headers = list(report.pareto[0])
        lines += _table(headers, [[row.get(h) for h in headers] for row in report.pareto])
        if report.hypervolume is not None:
            point = data.base["env"]["reference_point"]
            lines += ["", f"Hypervolume against the reference point {point}: {report.hypervolume:.4g}"]
    if report.confirmation:
        from xdrl.distributed.confirm import render

        lines += [
            "",
            "## Seeds: the best configurations again (`xdrl confirm`)",
            "",
            "Interquartile mean of the final deterministic evaluation return over seeds, with a stratified",
            "bootstrap 95% interval (Agarwal et al., 2021), and the probability that one configuration beats another.",
            "",
            "```",
            render(report.confirmation),
            "```",
        ]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def terminal_summary(report: Report) -> str:
    data = report.data
    metric = data.metrics[0]
    columns = ["trial", "status", "frames", f"best {metric}", f"last {metric}", "wall s"]
    params = [k for k in (report.rows[0] if report.rows else {}) if k.startswith("param ")]
    columns[2:2] = params
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in report.rows)) if report.rows else len(c) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns) for r in report.rows]
    if report.best_command:
        lines += ["", f"best: {report.best.trial_id}", f"train it: {report.best_command}"]
    if report.pareto:
        lines += ["", f"Pareto front: {len(report.pareto)} trial(s)"]
        if report.hypervolume is not None:
            lines.append(f"hypervolume: {report.hypervolume:.4g}")
    lines += ["", f"report: {report.markdown}"]
    return "\n".join(lines)
