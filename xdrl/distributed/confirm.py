"""``xdrl confirm``: is the best configuration really best? The top configurations again, over seeds.

Each of the top ``k`` configurations of a finished search trains again with
``n`` seeds, as one Ray Tune grid experiment beside the search (``<name>-confirm``);
every run ends with a deterministic evaluation of its final policy. Per
configuration: the interquartile mean of those returns with a stratified
bootstrap 95% interval; per pair: the probability that one beats the other.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np

from xdrl.builder.checkpointing import atomic_write_text
from xdrl.config.errors import ConfigError
from xdrl.distributed import tuner
from xdrl.report import stats
from xdrl.report.data import load_experiment

CONFIRM_FILE = "confirm.json"


def run_confirm_trial(
    sampled: dict[str, Any],
    base: dict[str, Any],
    candidates: list[dict[str, Any]],
    final_episodes: int,
    experiment_dir: str,
) -> None:
    """Trainable: candidate ``xdrl_candidate`` of the search with seed ``seed``."""
    from xdrl.distributed.trainable import run_trial

    values = {**candidates[sampled["xdrl_candidate"]], "seed": sampled["seed"]}
    run_trial(values, base, final_episodes=final_episodes, experiment_dir=experiment_dir)


def top_candidates(directory: pathlib.Path, top: int) -> tuple[Any, list[dict[str, Any]], list[Any]]:
    """The search's base config and the sampled values of its ``top`` best trials."""
    data = load_experiment(directory)
    if len(data.metrics) != 1:
        raise ConfigError("search.metric", data.metrics, "a single metric for xdrl confirm (this search has several)")
    metric, mode = data.metrics[0], data.modes[0]
    ranked = sorted(
        (t for t in data.trials if t.best(metric, mode) is not None),
        key=lambda t: t.best(metric, mode),
        reverse=mode == "max",
    )
    if not ranked:
        raise ConfigError("DIR", str(directory), f"an experiment with trials that reported {metric}")
    return data, [t.params for t in ranked[:top]], ranked[:top]


def confirm(directory: str | pathlib.Path, *, top: int, seeds: int, episodes: int = 10) -> dict[str, Any]:
    """Run the confirmation experiment and return (and store) its statistics."""
    from ray import tune

    directory = pathlib.Path(directory).resolve()
    if top < 1 or seeds < 2 or episodes < 1:
        raise ConfigError("--top/--seeds/--episodes", (top, seeds, episodes), "top >= 1, seeds >= 2, episodes >= 1")
    data, candidates, trials = top_candidates(directory, top)
    base = {**data.base, "search": None}
    from xdrl.config import validate
    from xdrl.distributed.search import with_values

    for params in candidates:  # before any cluster resource is used
        validate(with_values(base, {**params, "seed": 0}))
    search = data.base["search"]
    name = f"{data.name}-confirm"
    tuner._init_ray()
    trainable = tuner.trainable_class_with(
        tune.with_parameters(
            run_confirm_trial,
            base=base,
            candidates=candidates,
            final_episodes=episodes,
            experiment_dir=str(directory.parent / name),
        ),
        base,
    )
    grid = tune.Tuner(
        trainable,
        param_space={
            "xdrl_candidate": tune.grid_search(list(range(len(candidates)))),
            "seed": tune.grid_search(list(range(seeds))),
        },
        tune_config=tune.TuneConfig(max_concurrent_trials=search["max_concurrent_trials"], reuse_actors=False),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(directory.parent),
            failure_config=tune.FailureConfig(max_failures=search["max_failures"]),
            verbose=1,
        ),
    ).fit()
    from xdrl.distributed.trainable import FINAL_RETURN

    scores: dict[int, list[float]] = {i: [] for i in range(len(candidates))}
    for result in grid:
        if result.metrics and FINAL_RETURN in result.metrics:
            scores[result.config["xdrl_candidate"]].append(float(result.metrics[FINAL_RETURN]))
    summary = summarize(candidates, [t.trial_id for t in trials], scores)
    summary["experiment"] = str(directory.parent / name)
    (directory.parent / name).mkdir(exist_ok=True)
    atomic_write_text(directory.parent / name / CONFIRM_FILE, json.dumps(summary, indent=1))
    return summary


def summarize(candidates: list[dict[str, Any]], trial_ids: list[str], scores: dict[int, list[float]]) -> dict[str, Any]:
    """IQM with bootstrap interval per candidate, probability of improvement per pair."""
    rows = []
    for index, params in enumerate(candidates):
        values = np.array(scores.get(index, []), dtype=float).reshape(-1, 1)
        interval = stats.bootstrap_iqm(values) if len(values) else None
        rows.append(
            {
                "rank": index + 1,
                "search_trial": trial_ids[index],
                "params": params,
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


def render(summary: dict[str, Any]) -> str:
    lines = ["rank  search trial  IQM final return  95% CI              returns  params"]
    for row in summary["candidates"]:
        ci = "-" if row["ci95"] is None else f"[{row['ci95'][0]:.1f}, {row['ci95'][1]:.1f}]"
        iqm = "-" if row["iqm"] is None else f"{row['iqm']:.1f}"
        returns = ", ".join(f"{r:.0f}" for r in row["returns"])
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["params"].items())
        lines.append(f"{row['rank']:<5} {row['search_trial']:<13} {iqm:<17} {ci:<20} [{returns}]  {params}")
    if summary["probability_of_improvement"]:
        lines.append("")
        lines.append("P(rank X beats rank Y) with 95% CI:")
        for pair in summary["probability_of_improvement"]:
            if pair["x"] < pair["y"]:
                lines.append(
                    f"  P({pair['x']} > {pair['y']}) = {pair['p']:.2f} [{pair['ci95'][0]:.2f}, {pair['ci95'][1]:.2f}]"
                )
    return "\n".join(lines)


def load_summary(experiment_dir: pathlib.Path) -> dict[str, Any] | None:
    """The confirmation results of a search, when ``xdrl confirm`` ran on it."""
    path = experiment_dir.parent / f"{experiment_dir.name}-confirm" / CONFIRM_FILE
    return json.loads(path.read_text()) if path.exists() else None
