"""``xdrl confirm``: is the best configuration really best? The top configurations again, over seeds.

Each of the top ``k`` configurations of a finished search trains again with
``n`` seeds, as one Ray Tune grid experiment beside the search (``<name>-confirm``);
every run ends with a deterministic evaluation of its final policy. Per
configuration: the interquartile mean of those returns with a stratified
bootstrap 95% interval; per pair: the probability that one beats the other.

A population-based search (PBT, PB2) has no fixed best configuration: a member's
values changed at each exploit, and its trainer state came from its donors. There
the top ``k`` members by their final search metric are re-run with the ``schedule``
of their lineage (:func:`xdrl.report.population.lineage_schedule`): the values their
trainer state was trained with, put in force at the same frames.

This module runs the grid; the statistics and their table are the report's
(:mod:`xdrl.report.confirmation`), the file ``confirm.json`` is a record
(:mod:`xdrl.records.experiment`), which ``xdrl report`` shows.
"""

from __future__ import annotations

import pathlib
from typing import Any

from xdrl.config.errors import ConfigError
from xdrl.distributed import tuner
from xdrl.records.experiment import confirm_directory, write_confirmation
from xdrl.report import population
from xdrl.report.confirmation import render, summarize
from xdrl.report.data import load_experiment

__all__ = ["confirm", "render", "run_confirm_trial", "summarize", "top_candidates"]


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
    """The search's base config and the sampled values of its ``top`` best trials.

    PBT/PB2: the ``top`` members with the best final search metric, each as its lineage's first
    sampled values (those :data:`search.pbt.mutations` does not change) and its ``schedule``.
    """
    data = load_experiment(directory)
    if len(data.metrics) != 1:
        raise ConfigError("search.metric", data.metrics, "a single metric for xdrl confirm (this search has several)")
    metric, mode = data.metrics[0], data.modes[0]
    if population.is_population_based(data):
        members = population.ranked_members(data)[:top]
        if not members:
            raise ConfigError("DIR", str(directory), f"an experiment with members that reported {metric}")
        keys = population.mutated_keys(data)
        candidates = []
        for member in members:
            schedule = population.lineage_schedule(data, member.trial_id, keys)
            fixed = {k: v for k, v in schedule.root_params.items() if k not in keys}
            # The lineage's own length: a member's budget is its own iterations, and the frames it
            # continued from at an exploit are the donor's, so its trainer may end before or after
            # collector.total_frames.
            length = {} if schedule.frames is None else {"collector.total_frames": schedule.frames}
            candidates.append({**fixed, **length, "schedule": schedule.entries})
        return data, candidates, members
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
    from xdrl.config.loading import with_new_defaults

    base = with_new_defaults({**data.base, "search": None})  # an experiment stored before the schedule key
    from xdrl.config import validate
    from xdrl.distributed.search import with_values

    for params in candidates:  # before any cluster resource is used
        validate(with_values(base, {**params, "seed": 0}))
    search = data.base["search"]
    confirm_dir = confirm_directory(directory)
    tuner._init_ray()
    trainable = tuner.trainable_class_with(
        tune.with_parameters(
            run_confirm_trial,
            base=base,
            candidates=candidates,
            final_episodes=episodes,
            experiment_dir=str(confirm_dir),
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
            name=confirm_dir.name,
            storage_path=str(confirm_dir.parent),
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
    if population.is_population_based(data):
        summary["rerun"] = "schedule"  # each candidate's params hold the schedule of its member's lineage
    summary["experiment"] = str(confirm_dir)
    write_confirmation(directory, summary)
    return summary
