"""The report's PNG figures (matplotlib, headless)."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: a report is written, never shown

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xdrl.report.data import Trial  # noqa: E402


def _save(figure: Any, path: pathlib.Path) -> pathlib.Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def learning_curves(trials: Sequence[Trial], metric: str, best: Trial | None, path: pathlib.Path) -> pathlib.Path:
    """The search metric against collected frames, one line per trial, the best one highlighted."""
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for trial in trials:
        points = trial.values(metric)
        if not points:
            continue
        frames, values = zip(*points, strict=True)
        if best is not None and trial.trial_id == best.trial_id:
            axes.plot(
                frames, values, color="tab:red", linewidth=2.5, marker="o", label=f"best: {trial.trial_id}", zorder=3
            )
        else:
            axes.plot(frames, values, color="tab:gray", linewidth=1, alpha=0.7, marker=".")
    axes.set_xlabel("collected frames")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric}, all trials")
    axes.grid(alpha=0.3)
    if best is not None:
        axes.legend(loc="best")
    return _save(figure, path)


def optimization_history(values: Sequence[float | None], mode: str, metric: str, path: pathlib.Path) -> pathlib.Path:
    """Each study trial's value in proposal order, and the best value so far."""
    figure, axes = plt.subplots(figsize=(8, 4.5))
    numbers = [i for i, v in enumerate(values) if v is not None]
    scores = [v for v in values if v is not None]
    axes.scatter(numbers, scores, color="tab:blue", label="trial value", zorder=3)
    if scores:
        running = np.maximum.accumulate(scores) if mode == "max" else np.minimum.accumulate(scores)
        axes.step(numbers, running, where="post", color="tab:red", label="best so far")
    axes.set_xlabel("trial (order proposed by the searcher)")
    axes.set_ylabel(metric)
    axes.set_title("optimisation history")
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    return _save(figure, path)


def param_importances(
    importances: dict[str, dict[str, float]], modes: Sequence[str], evaluator: str, path: pathlib.Path
) -> pathlib.Path:
    """Parameter importances as horizontal bars, one panel per objective.

    Args:
        importances: Metric -> parameter -> importance, as ``xdrl.report.build.param_importances`` gives them.
        modes: Each metric's direction (``max``/``min``), in the same order.
        evaluator: The name of the evaluator that computed them (the figure says which).
        path: Where the PNG goes.
    """
    rows = max((len(v) for v in importances.values()), default=1)
    figure, panels = plt.subplots(
        len(importances), 1, figsize=(8, len(importances) * max(2.5, 0.6 * rows + 1)), squeeze=False
    )
    for axes, (metric, values), mode in zip(panels[:, 0], importances.items(), modes, strict=True):
        names = list(values)[::-1]  # most important on top
        axes.barh(names, [values[n] for n in names], color="tab:green")
        better = "high" if mode == "max" else "low"
        axes.set_xlabel(f"importance for {better} {metric} ({evaluator})")
        axes.grid(alpha=0.3, axis="x")
    panels[0, 0].set_title(f"parameter importances ({evaluator})")
    return _save(figure, path)


def pareto_front(
    points: np.ndarray, mask: np.ndarray, metrics: Sequence[str], reference: Sequence[float] | None, path: pathlib.Path
) -> pathlib.Path:
    """Trials' two objectives, the Pareto front marked and joined."""
    figure, axes = plt.subplots(figsize=(6.5, 5))
    axes.scatter(points[~mask, 0], points[~mask, 1], color="tab:gray", label="dominated")
    front = points[mask]
    order = np.argsort(front[:, 0])
    axes.plot(front[order, 0], front[order, 1], color="tab:red", marker="o", markersize=8, label="Pareto front")
    if reference is not None:
        axes.scatter([reference[0]], [reference[1]], color="black", marker="x", label="reference point")
    axes.set_xlabel(metrics[0])
    axes.set_ylabel(metrics[1])
    axes.set_title("trials and their Pareto front")
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    return _save(figure, path)
