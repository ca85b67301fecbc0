"""What ``xdrl confirm`` found: its summary (the content of ``confirm.json``) and its text table.

Per configuration: the interquartile mean of the final deterministic evaluation
returns over seeds with a stratified bootstrap 95% interval; per pair: the
probability that one configuration beats the other (:mod:`xdrl.report.stats`).
The file itself is written and read through :mod:`xdrl.records.experiment`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xdrl.report import stats


def summarize(
    candidates: Sequence[Mapping[str, Any]], trial_ids: Sequence[str], scores: Mapping[int, Sequence[float]]
) -> dict[str, Any]:
    """IQM with bootstrap interval per candidate, probability of improvement per ordered pair.

    Args:
        candidates: The sampled values of each configuration, best of the search first.
        trial_ids: The search trial each configuration comes from, in the same order.
        scores: Candidate index -> the final returns of its seeds (missing or empty: no run finished).

    Examples:
        >>> summary = summarize([{"lr": 0.1}, {"lr": 0.2}], ["a", "b"], {0: [3.0, 4.0], 1: [1.0, 2.0]})
        >>> [(row["rank"], row["iqm"]) for row in summary["candidates"]]
        [(1, 3.5), (2, 1.5)]
        >>> [(pair["x"], pair["y"], pair["p"]) for pair in summary["probability_of_improvement"]]
        [(1, 2, 1.0), (2, 1, 0.0)]
    """
    rows = []
    for index, params in enumerate(candidates):
        values = np.array(scores.get(index, []), dtype=float).reshape(-1, 1)
        interval = stats.bootstrap_iqm(values) if len(values) else None
        rows.append(
            {
                "rank": index + 1,
                "search_trial": trial_ids[index],
                "params": dict(params),
                "returns": values.reshape(-1).tolist(),
                "iqm": None if interval is None else interval.estimate,
                "ci95": None if interval is None else [interval.low, interval.high],
            }
        )
    pairs = []
    for i in range(len(rows)):
        for j in range(len(rows)):
            if i != j and rows[i]["returns"] and rows[j]["returns"]:
                p = stats.bootstrap_probability_of_improvement(
                    np.array(rows[i]["returns"]), np.array(rows[j]["returns"])
                )
                pairs.append({"x": i + 1, "y": j + 1, "p": p.estimate, "ci95": [p.low, p.high]})
    return {"candidates": rows, "probability_of_improvement": pairs}


def describe_entry(entry: Mapping[str, Any]) -> str:
    """One entry of a ``schedule``: ``frames 512: algo.lr=0.0007 ...``.

    Examples:
        >>> describe_entry({"frames": 512, "values": {"algo.lr": 0.00069816, "algo.epochs": 3}})
        'frames 512: algo.lr=0.0006982 algo.epochs=3'
    """
    values = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry["values"].items())
    return f"frames {entry['frames']}: {values}"


def render(summary: Mapping[str, Any]) -> str:
    """The summary as a fixed-width text table (the terminal's and ``report.md``'s).

    Examples:
        >>> print(render(summarize([{"lr": 0.1}], ["a"], {0: [3.0, 4.0]})).splitlines()[1])
        1     a             3.5               [3.0, 4.0]           [3, 4]  lr=0.1
    """
    lines = ["rank  search trial  IQM final return  95% CI              returns  params"]
    if summary.get("rerun") == "schedule":
        lines.insert(
            0,
            "Population-based search: each member's schedule re-ran (the values its lineage trained with, "
            "in force from the frames shown)",
        )
    for row in summary["candidates"]:
        ci = "-" if row["ci95"] is None else f"[{row['ci95'][0]:.1f}, {row['ci95'][1]:.1f}]"
        iqm = "-" if row["iqm"] is None else f"{row['iqm']:.1f}"
        returns = ", ".join(f"{r:.0f}" for r in row["returns"])
        fixed = {k: v for k, v in row["params"].items() if k != "schedule"}
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fixed.items())
        if "schedule" in row["params"]:
            params = f"{params} schedule:".strip()
        lines.append(f"{row['rank']:<5} {row['search_trial']:<13} {iqm:<17} {ci:<20} [{returns}]  {params}")
        for entry in row["params"].get("schedule", []):
            lines.append(f"{'':<8}{describe_entry(entry)}")
    if summary["probability_of_improvement"]:
        lines.append("")
        lines.append("P(rank X beats rank Y) with 95% CI:")
        for pair in summary["probability_of_improvement"]:
            if pair["x"] < pair["y"]:
                lines.append(
                    f"  P({pair['x']} > {pair['y']}) = {pair['p']:.2f} [{pair['ci95'][0]:.2f}, {pair['ci95'][1]:.2f}]"
                )
    return "\n".join(lines)
