"""A report as text: ``report.md`` and the terminal summary of ``xdrl report``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xdrl.report.confirmation import render as render_confirmation
from xdrl.report.importances import TOP_QUANTILE
from xdrl.report.population import describe_schedule

if TYPE_CHECKING:  # only for annotations: the builder imports this module
    from xdrl.report.build import Report


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return lines + ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]


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


def _start(base: dict[str, Any]) -> str:
    """Where every trial's policy started: fresh weights or a warm start's file (``init.policy``)."""
    policy = (base.get("init") or {}).get("policy")
    return f"warm start from `{policy}` (init.policy)" if policy else "fresh weights"


def _rows_table(rows: list[dict[str, Any]]) -> list[str]:
    headers = list(dict.fromkeys(h for row in rows for h in row))
    return _table(headers, [[row.get(h) for h in headers] for row in rows])


def _population_text(report: Report) -> list[str]:
    """PBT/PB2: the schedule figure, the best member's schedule, the final population and every exploit."""
    found, data = report.population, report.data
    metric = data.metrics[0]
    scheduler = data.search["scheduler"].upper()
    lines = ["", f"## Population-based training ({scheduler})", ""]
    lines.append(
        f"Mutated keys: {', '.join(f'`{k}`' for k in found['keys'])}. A member's sampled values are only its "
        "start: at each exploit it copies a donor's trainer (frames included) and trains on with new values."
    )
    if "pbt_schedule" in report.figures:
        lines += [
            "",
            "### Hyperparameter schedule of every member",
            "",
            f"![Hyperparameter schedule]({report.figures['pbt_schedule'].name})",
        ]
    schedule = found["schedule"]
    if schedule is not None:
        chain = " -> ".join(
            f"`{m}`" + ("" if upto is None else f" (to its iteration {upto})") for m, upto in schedule.chain
        )
        lines += [
            "",
            "### Best member's schedule",
            "",
            f"Member `{found['best']}` has the best final `{metric}`. Its trainer state's lineage: {chain}. "
            "The values it was trained with, by the trainer's frames (each in force from the first batch "
            "starting at or after them):",
            "",
        ]
        lines += _table(
            ["from frames", *found["keys"]],
            [[e["frames"], *(e["values"].get(k) for k in found["keys"])] for e in schedule.entries],
        )
        lines += ["", "Train it again (`xdrl confirm` re-runs it over seeds):", "", "```bash", found["command"], "```"]
    lines += ["", "### Final population", ""]
    lines += _rows_table(found["final"]) if found["final"] else ["No member has reported yet."]
    lines += ["", "### Lineage: every exploit", ""]
    if found["lineage"]:
        lines.append(
            "`after iteration`: the member's last own iteration before it took the donor's checkpoint of "
            "`donor iteration` (the donor's clock); `frames`: the donor's frames, where the member continues."
        )
        lines += [""] + _rows_table(found["lineage"])
    else:
        lines.append("No member has exploited another yet.")
    return lines


def render_markdown(report: Report) -> str:
    """The Markdown page of a report (figures are linked by file name: the page sits beside them)."""
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
        f"- start: {_start(data.base)}",
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
    if report.population is not None:
        lines += _population_text(report)
    if report.pareto:
        lines += ["", "## Pareto front of the trials", ""]
        headers = list(report.pareto[0])
        lines += _table(headers, [[row.get(h) for h in headers] for row in report.pareto])
        if report.hypervolume is not None:
            point = data.base["env"]["reference_point"]
            lines += ["", f"Hypervolume against the reference point {point}: {report.hypervolume:.4g}"]
    if report.confirmation:
        lines += [
            "",
            "## Seeds: the best configurations again (`xdrl confirm`)",
            "",
            "Interquartile mean of the final deterministic evaluation return over seeds, with a stratified",
            "bootstrap 95% interval (Agarwal et al., 2021), and the probability that one configuration beats another.",
            "",
            "```",
            render_confirmation(report.confirmation),
            "```",
        ]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def terminal_summary(report: Report) -> str:
    """The trials table, the best configuration's command and where the report is, for the terminal."""
    data = report.data
    metric = data.metrics[0]
    columns = ["trial", "status", "frames", f"best {metric}", f"last {metric}", "wall s"]
    params = [k for k in (report.rows[0] if report.rows else {}) if k.startswith("param ")]
    columns[2:2] = params
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in report.rows)) if report.rows else len(c) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns) for r in report.rows]
    if (report.data.base.get("init") or {}).get("policy"):
        lines += ["", f"start: {_start(report.data.base)}"]
    if report.best_command:
        lines += ["", f"best: {report.best.trial_id}", f"train it: {report.best_command}"]
    if report.pareto:
        lines += ["", f"Pareto front: {len(report.pareto)} trial(s)"]
        if report.hypervolume is not None:
            lines.append(f"hypervolume: {report.hypervolume:.4g}")
    if report.population is not None and report.population["schedule"] is not None:
        lines += ["", f"best member (final {metric}): {report.population['best']}, its schedule:"]
        lines += [f"  {line}" for line in describe_schedule(report.population["schedule"].entries)]
        lines.append(f"train it: {report.population['command']}")
    lines += ["", f"report: {report.markdown}"]
    return "\n".join(lines)
