"""``xdrl tune``: a Ray Tune experiment in which every trial is a full xdrl training run.

:func:`plan` (from :mod:`xdrl.distributed.plan`) checks everything before Ray starts;
:func:`run` starts or restores the Tune experiment and waits for it.
"""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Sequence
from typing import Any

from xdrl.distributed.plan import (  # noqa: F401 - plan and plan_from_directory: `xdrl tune`'s two entry points
    TunePlan,
    check_storage_reaches_every_node,
    experiment_location,
    plan,
    plan_from_directory,
    trial_files_root,
)
from xdrl.distributed.search import (
    POPULATION_SCHEDULERS,
    make_scheduler,
    make_searcher,
    study_storage,
    tune_space,
)
from xdrl.records.experiment import is_uri, train_command, write_base_config

_log = logging.getLogger(__name__)


def _init_ray() -> None:
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True)  # the cluster of `ray job submit` / `ray start`
    else:
        ray.init(include_dashboard=False)  # the embedded default: a local Ray on this machine


def trainable_class_with(function: Any, base: dict[str, Any]) -> Any:
    """An xdrl trial trainable for ``function`` (a ``tune.with_parameters`` result) with the config's resources."""
    from ray import tune

    from xdrl.distributed.trainable import trainable_class

    resources = base["resources"]
    return tune.with_resources(
        trainable_class(function), {"cpu": resources["cpus_per_trial"], "gpu": resources["gpus_per_trial"]}
    )


def _trainable(plan_: TunePlan) -> Any:
    from ray import tune

    from xdrl.distributed.trainable import run_trial

    base = {**plan_.base, "search": None}
    population = plan_.search.scheduler in POPULATION_SCHEDULERS
    exploits = {"copy_replay_buffer": plan_.search.pbt.copy_replay_buffer} if population else None
    return trainable_class_with(
        tune.with_parameters(run_trial, base=base, experiment_dir=trial_files_root(plan_), exploits=exploits), base
    )


def _tuner(plan_: TunePlan, callbacks: Sequence[Any] = ()) -> Any:
    from ray import tune

    search = plan_.search
    return tune.Tuner(
        _trainable(plan_),
        param_space=tune_space(plan_.dimensions, search.searcher),
        tune_config=tune.TuneConfig(
            search_alg=make_searcher(search, plan_.experiment_name, plan_.experiment_dir),
            scheduler=make_scheduler(search, plan_.iterations),
            num_samples=search.num_samples,
            max_concurrent_trials=search.max_concurrent_trials,
            # A finished trial's worker takes the next trial (xdrl.distributed.worker resets it in between).
            reuse_actors=search.reuse_actors,
        ),
        run_config=_run_config(plan_, callbacks),
    )


def _run_config(plan_: TunePlan, callbacks: Sequence[Any] = ()) -> Any:
    from ray import tune

    from xdrl.distributed.result_loggers import result_loggers

    return tune.RunConfig(
        name=plan_.experiment_name,
        storage_path=plan_.storage_path,
        failure_config=tune.FailureConfig(max_failures=plan_.search.max_failures),
        # Population-based training: every checkpoint stays, since a paused member may restore from a
        # donor's checkpoint only after the donor has reported several newer ones.
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=None if plan_.search.scheduler in POPULATION_SCHEDULERS else plan_.base["checkpoint"]["keep"]
        ),
        # Tune's result loggers under the lineage rule (the first record of an iteration stands).
        callbacks=[*result_loggers(), *callbacks],
        verbose=1,
    )


def run(plan_: TunePlan, *, resume: bool = False, callbacks: Sequence[Any] = ()) -> Any:
    """Start (or, with ``resume``, restore) the Tune experiment and wait for it.

    Args:
        plan_: what :func:`plan` decided.
        resume: restore the experiment in ``plan_.experiment_dir``.
        callbacks: extra Ray Tune callbacks (new experiments only).
    """
    import ray
    from ray import tune

    # The pre-flight check replaced Tune's per-result check; evaluation metrics come every few iterations.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    if plan_.search.searcher == "optuna":
        # Before Ray starts and anything is written: a resumed study needs its password on this node.
        study_storage(plan_.search, plan_.experiment_dir)
    _init_ray()
    check_storage_reaches_every_node(plan_, ray.nodes(), resume=resume)  # before anything is written
    location = experiment_location(plan_)
    write_base_config(location, plan_.base, plan_.overrides)  # URL passwords stored as ***
    if resume:
        tuner = tune.Tuner.restore(
            location,
            trainable=_trainable(plan_),
            resume_unfinished=True,
            resume_errored=True,
            restart_errored=False,
        )
    else:
        tuner = _tuner(plan_, callbacks)
    results = tuner.fit()
    wait_for_wandb_runs([pathlib.Path(r.path) for r in results if r.path and not is_uri(r.path)])
    return results


def wait_for_wandb_runs(trial_dirs: list[pathlib.Path], timeout: float = 60.0) -> list[pathlib.Path]:
    """Give stopping trial processes time to finish their W&B runs before Ray shuts down.

    A trial stopped by the scheduler finishes its W&B run while its actor exits;
    the driver's Ray shutdown would cut that short. Returns the trial
    directories whose newest offline run still has no exit record afterwards.
    """
    import time

    from xdrl.records.wandb_files import find_run_files, read_run

    def unfinished() -> list[pathlib.Path]:
        pending = []
        for directory in trial_dirs:
            files = find_run_files(directory / "wandb") if (directory / "wandb").exists() else []
            if files and not read_run(max(files, key=lambda p: p.stat().st_mtime)).finished:
                pending.append(directory)
        return pending

    deadline = time.monotonic() + timeout
    pending = unfinished()
    while pending and time.monotonic() < deadline:
        time.sleep(0.5)
        pending = unfinished()
    for directory in pending:
        _log.warning("the W&B run of %s did not finish within %.0f s", directory.name, timeout)
    return pending


def study_line(plan_: TunePlan) -> str | None:
    """Where the Optuna study is, its password as ``***``; ``None`` without a study (or a remote storage path).

    Raises:
        ConfigError: the study's password is needed and this node does not have it.
    """
    search = plan_.search
    if is_uri(plan_.storage_path) or search.searcher != "optuna":
        return None
    storage = study_storage(search, plan_.experiment_dir)
    password = f", password from {storage.password_from}" if storage.password_from else ""
    return f"optuna study: {storage.shown} (study {search.study.name or plan_.experiment_name}{password})"


def best_summary(results: Any, plan_: TunePlan) -> str:
    """The best trial's sampled values, metric and a command to re-run it."""
    search = plan_.search
    lines = [f"experiment: {plan_.experiment_dir}"]
    study = study_line(plan_)
    if study is not None:
        lines.append(study)
    errors = [r for r in results if r.error is not None]
    lines.append(f"trials: {len(results)} ({len(errors)} errored)")
    if isinstance(search.metric, list):
        lines.append("multi-objective: the Pareto front is in the Optuna study")
        return "\n".join(lines)
    try:
        best = results.get_best_result(metric=search.metric, mode=search.mode, scope="all")
    except (RuntimeError, KeyError, ValueError):
        lines.append(f"no trial reported {search.metric}")
        return "\n".join(lines)
    sampled = {k: v for k, v in best.config.items()}
    value = best.metrics.get(search.metric) if best.metrics else None
    lines.append(f"best trial: {best.path}")
    lines.append(f"best {search.metric} ({search.mode}): {value}")
    lines.append("best config: " + ", ".join(f"{k}={v}" for k, v in sampled.items()))
    lines.append("train it: " + train_command(plan_.overrides, sampled))
    return "\n".join(lines)
