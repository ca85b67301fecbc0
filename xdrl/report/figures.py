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


def pbt_schedule(
    trials: Sequence[Trial],
    keys: Sequence[str],
    exploits: dict[str, list[dict[str, Any]]],
    best: str | None,
    path: pathlib.Path,
    log_keys: Sequence[str] = (),
) -> pathlib.Path:
    """Each member's hyperparameters over its trainer's frames: one panel per mutated key, one line per member.

    A member's frames jump to its donor's at an exploit: its line breaks there, and the exploit
    is marked where the member continues (a dotted stroke from the donor's value to its new one).

    Args:
        trials: The members (their ``metrics.jsonl`` rows hold ``hparams/<key>``).
        keys: The mutated keys, one panel each.
        exploits: Member id -> its ``pbt_events.jsonl`` events.
        best: The member drawn thick (the best final search metric), if any.
        path: Where the PNG goes.
        log_keys: Keys drawn on a log scale (loguniform ranges).
    """
    figure, panels = plt.subplots(len(keys), 1, figsize=(8, 2.8 * len(keys) + 0.6), squeeze=False, sharex=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, trial in enumerate(trials):
        color = colors[index % len(colors)]
        starts = {int(e["iteration"]) + 1 for e in exploits.get(trial.trial_id, [])}
        # The member's lives: its rows split before each row that follows an exploit.
        lives: list[list[dict[str, Any]]] = [[]]
        for row in trial.rows:
            if int(row.get("counters/iter", 0)) in starts and lives[-1]:
                lives.append([])
            lives[-1].append(row)
        for axes, key in zip(panels[:, 0], keys, strict=True):
            name = f"hparams/{key}"
            for number, life in enumerate(lives):
                points = [(r["counters/total_frames"], r[name]) for r in life if name in r]
                if not points:
                    continue
                frames, values = zip(*points, strict=True)
                axes.plot(
                    frames,
                    values,
                    color=color,
                    linewidth=2.5 if trial.trial_id == best else 1.2,
                    marker=".",
                    label=(f"{trial.trial_id}{' (best)' if trial.trial_id == best else ''}" if number == 0 else None),
                )
            for event in exploits.get(trial.trial_id, []):
                new, old = event.get("hparams", {}).get(name), event.get("donor_hparams", {}).get(name)
                if new is None:
                    continue
                axes.scatter([event["frames"]], [new], color=color, marker="D", s=36, zorder=4, edgecolors="black")
                if old is not None:
                    axes.plot([event["frames"]] * 2, [old, new], color=color, linestyle=":", linewidth=1)
    for axes, key in zip(panels[:, 0], keys, strict=True):
        axes.set_ylabel(key)
        if key in log_keys:
            axes.set_yscale("log")
        axes.grid(alpha=0.3)
    panels[-1, 0].set_xlabel("trainer frames (counters/total_frames; an exploit continues from the donor's)")
    panels[0, 0].set_title("hyperparameter schedule of every member (diamonds: exploits)")
    panels[0, 0].legend(loc="best", fontsize="small")
    return _save(figure, path)
