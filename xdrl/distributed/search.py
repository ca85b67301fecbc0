"""The ``search`` config group as Ray Tune objects: the space, the searcher and the scheduler.

Parsing and the pre-flight checks live in :mod:`xdrl.config.search`.
"""

from __future__ import annotations

import pathlib
from typing import Any

from xdrl.config import credentials
from xdrl.config.schema import SearchConfig
from xdrl.config.search import (  # noqa: F401 - the planner's entry points, re-exported for it
    POPULATION_SCHEDULERS,
    Dimension,
    check_asha_iterations,
    check_metrics,
    check_space_keys,
    check_space_values,
    parse_dimensions,
    parse_search,
    with_values,
)


def tune_space(dimensions: list[Dimension], searcher: str) -> dict[str, Any]:
    """Ray Tune's ``param_space``: dotted key -> Tune domain."""
    from ray import tune

    space = {}
    for d in dimensions:
        if searcher == "grid":  # every dimension is a choice (xdrl.config.search.check_grid)
            space[d.key] = tune.grid_search(list(d.values))
        elif d.type == "uniform":
            space[d.key] = tune.uniform(d.low, d.high)
        elif d.type == "loguniform":
            space[d.key] = tune.loguniform(d.low, d.high)
        elif d.type == "int":
            space[d.key] = tune.randint(int(d.low), int(d.high) + 1)  # Tune's upper bound is exclusive
        else:
            space[d.key] = tune.choice(list(d.values))
    return space


def study_storage(search: SearchConfig, experiment_dir: pathlib.Path) -> credentials.StudyStorage:
    """The study's URL: ``search.study.storage`` or the SQLite file ``optuna.db`` of the experiment.

    Its :attr:`~xdrl.config.credentials.StudyStorage.url` holds the database password (from
    the URL, ``XDRL_STUDY_PASSWORD`` or ``search.study.password_file`` on this node) and
    goes to Optuna only; :attr:`~xdrl.config.credentials.StudyStorage.shown` is for printing.

    Raises:
        ConfigError: a stored URL whose password this node does not have, or an unreadable password file.
    """
    study = search.study
    return credentials.study_storage(study.storage, study.password_file, f"sqlite:///{experiment_dir / 'optuna.db'}")


def study_storage_url(search: SearchConfig, experiment_dir: pathlib.Path) -> str:
    """The URL Optuna opens, password included: memory only (print :func:`study_storage`'s ``shown``)."""
    return study_storage(search, experiment_dir).url


def make_searcher(search: SearchConfig, experiment_name: str, experiment_dir: pathlib.Path) -> Any:
    """OptunaSearch (seeded TPE, persistent study) or Tune's random/grid generator."""
    if search.searcher != "optuna":
        from ray.tune.search import BasicVariantGenerator

        return BasicVariantGenerator(random_state=search.seed, max_concurrent=search.max_concurrent_trials)
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from xdrl.distributed.study import StudyRDBStorage

    class _OptunaSearch(OptunaSearch):
        # xdrl evaluates every few iterations: results before the first evaluation lack the metric.
        def on_trial_result(self, trial_id: str, result: dict) -> None:
            if self._has_metrics(result):
                super().on_trial_result(trial_id, result)

        # A result without every searched metric never completes a study trial: Ray's OptunaSearch
        # would tell a multi-objective study a list holding None (the trial then stays RUNNING).
        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            super().on_trial_complete(trial_id, result if result and self._has_metrics(result) else None, error)

        def _has_metrics(self, result: dict) -> bool:
            metrics = self.metric if isinstance(self.metric, list) else [self.metric]
            return all(result.get(m) is not None for m in metrics)

    return _OptunaSearch(
        metric=search.metric,
        mode=search.mode,
        sampler=optuna.samplers.TPESampler(seed=search.seed),
        study_name=search.study.name or experiment_name,
        storage=StudyRDBStorage(study_storage(search, experiment_dir), search.study.password_file),
    )


def make_scheduler(search: SearchConfig, iterations: int) -> Any:
    """ASHA or population-based training (PBT, PB2) on trainer iterations, or None."""
    if search.scheduler == "none":
        return None
    if search.scheduler in POPULATION_SCHEDULERS:
        return make_population_based(search, iterations)
    from ray.tune.schedulers import ASHAScheduler

    metric = search.scheduler_metric or (search.metric if isinstance(search.metric, str) else search.metric[0])
    mode = search.mode if isinstance(search.mode, str) else search.mode[0]
    if search.scheduler_metric is not None and isinstance(search.mode, list):
        mode = search.mode[search.metric.index(metric)] if metric in search.metric else search.mode[0]
    return ASHAScheduler(
        time_attr="training_iteration",
        metric=metric,
        mode=mode,
        max_t=search.asha.max_t or iterations,
        grace_period=min(search.asha.grace_period, iterations),
        reduction_factor=search.asha.reduction_factor,
        # A trial that reaches max_t ends on its own: its last iteration, checkpoint and W&B
        # row complete inside the trial instead of racing an actor shutdown.
        stop_last_trials=False,
    )


def _explore_within(dimensions: list[Dimension]) -> Any:
    """Tune's ``custom_explore_fn``: explored values back inside their ranges, ints whole.

    PBT multiplies a value by 0.8 or 1.2, which can leave the range (and the values the
    config accepts, which the pre-flight check tried only inside it).
    """
    bounded = [d for d in dimensions if d.type != "choice"]

    def explore(config: dict[str, Any]) -> dict[str, Any]:
        for d in bounded:
            if d.key in config:
                value = min(max(config[d.key], d.low), d.high)
                config[d.key] = int(round(value)) if d.type == "int" else float(value)
        return config

    return explore


def make_population_based(search: SearchConfig, iterations: int | None = None) -> Any:
    """Ray Tune's ``PopulationBasedTraining`` (``pbt``) or ``PB2`` (``pb2``) over ``search.pbt.mutations``.

    Each exploited member keeps its own iteration count
    (:func:`xdrl._compat.member_keeps_its_clock`), so that its records hold one
    iteration after the other. A member never exploits a donor without a checkpoint:
    Ray skips the exploit then, and every perturbation boundary is a checkpoint
    iteration (``perturbation_interval`` is a multiple of ``checkpoint.interval``).
    """
    from ray.tune.schedulers import PopulationBasedTraining

    from xdrl._compat import member_keeps_its_clock

    pbt = search.pbt
    dimensions = parse_dimensions(pbt.mutations, "search.pbt.mutations")
    # Each member decides when it reaches a boundary (Tune's asynchronous PBT). Not ``synch``: it pauses
    # members at every result until all reach the boundary, and a function trainable paused between
    # checkpoints restarts from its last one, re-runs the same iteration and is paused again, for ever.
    common = {
        "time_attr": "training_iteration",
        "metric": search.metric,
        "mode": search.mode,
        "perturbation_interval": pbt.perturbation_interval,
        "quantile_fraction": pbt.quantile_fraction,
        "custom_explore_fn": _explore_within(dimensions),
        # Evaluation metrics come every few iterations (then carried forward): a result before the
        # first evaluation has none, and takes no part in a decision.
        "require_attrs": False,
    }
    if search.scheduler == "pb2":
        from ray.tune.schedulers.pb2 import PB2

        base: type = PB2
        settings = {"hyperparam_bounds": {d.key: [d.low, d.high] for d in dimensions}}
    else:
        base = PopulationBasedTraining
        settings = {
            "hyperparam_mutations": tune_space(dimensions, "random"),
            "resample_probability": pbt.resample_probability,
        }

    class _MembersKeepTheirClock(base):  # type: ignore[misc, valid-type]
        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
            if iterations is not None and result.get("training_iteration", 0) >= iterations:
                return self.CONTINUE
            return super().on_trial_result(tune_controller, trial, result)

        def _exploit(self, tune_controller: Any, trial: Any, trial_to_clone: Any) -> None:
            super()._exploit(tune_controller, trial, trial_to_clone)
            member_keeps_its_clock(self, trial)

    _MembersKeepTheirClock.__name__ = _MembersKeepTheirClock.__qualname__ = base.__name__
    return _MembersKeepTheirClock(**common, **settings)
