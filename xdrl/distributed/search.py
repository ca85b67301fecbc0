"""The ``search`` config group as Ray Tune objects: the space, the searcher and the scheduler.

Parsing and the pre-flight checks live in :mod:`xdrl.config.search`.
"""

from __future__ import annotations

import pathlib
from typing import Any

from xdrl.config import credentials
from xdrl.config.schema import SearchConfig
from xdrl.config.search import (  # noqa: F401 - the planner's entry points, re-exported for it
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
    """ASHA on trainer iterations, or None."""
    if search.scheduler == "none":
        return None
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
