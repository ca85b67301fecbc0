"""``xdrl tune``: a Ray Tune experiment in which every trial is a full xdrl training run."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import yaml

from xdrl.config import ConfigError, compose_config, validate
from xdrl.config.validation import check_output_dir
from xdrl.distributed.search import (
    check_asha_iterations,
    check_metrics,
    check_space_keys,
    check_space_values,
    make_scheduler,
    make_searcher,
    parse_dimensions,
    parse_search,
    study_storage_url,
    tune_space,
)

_log = logging.getLogger(__name__)
#: The base experiment config, stored in the experiment directory for --resume and reports.
BASE_CONFIG = "xdrl_experiment.yaml"


@dataclasses.dataclass
class TunePlan:
    """Everything ``xdrl tune`` decided before starting Ray."""

    base: dict[str, Any]
    search: Any
    dimensions: list[Any]
    experiment_name: str
    storage_path: str
    experiment_dir: pathlib.Path
    iterations: int
    #: The command-line overrides the experiment came from (for the best trial's `xdrl train` line).
    overrides: list[str] = dataclasses.field(default_factory=list)


def _is_uri(path: str) -> bool:
    return "://" in path


def experiment_location(plan_: TunePlan) -> str:
    """Where the experiment lives: a local directory or ``<storage URI>/<name>``."""
    if _is_uri(plan_.storage_path):
        return f"{plan_.storage_path.rstrip('/')}/{plan_.experiment_name}"
    return str(plan_.experiment_dir)


def write_experiment_file(location: str, name: str, text: str) -> None:
    """Write a small file into an experiment (local path or ``s3://``, ``gs://``, ``file://``)."""
    if not _is_uri(location):
        from xdrl.builder.checkpointing import atomic_write_text

        pathlib.Path(location).mkdir(parents=True, exist_ok=True)
        atomic_write_text(pathlib.Path(location) / name, text)
        return
    import pyarrow.fs

    filesystem, root = pyarrow.fs.FileSystem.from_uri(location)
    filesystem.create_dir(root, recursive=True)
    with filesystem.open_output_stream(f"{root}/{name}") as handle:
        handle.write(text.encode())


def read_experiment_file(location: str, name: str) -> str | None:
    """The text of an experiment file, ``None`` when it is not there."""
    if not _is_uri(location):
        path = pathlib.Path(location) / name
        return path.read_text() if path.is_file() else None
    import pyarrow.fs

    filesystem, root = pyarrow.fs.FileSystem.from_uri(location)
    if filesystem.get_file_info(f"{root}/{name}").type != pyarrow.fs.FileType.File:
        return None
    with filesystem.open_input_stream(f"{root}/{name}") as handle:
        return handle.read().decode()


def plan(overrides: Sequence[str], *, check_schema: bool = True) -> TunePlan:
    """Compose, validate and pre-flight check a search, before any cluster resource is used.

    Raises:
        ConfigError: bad experiment config, bad search config, a device other than
            auto or cpu, a searched key the config does not have, a point of the space
            (edges, midpoints, seeded samples) the config rejects, an ASHA grace period
            beyond the run, a metric the hook set does not produce, or a local storage
            path that cannot be written.
    """
    raw = compose_config(overrides)
    search = parse_search(raw)
    base = {**raw, "search": None}
    validated = validate(base)
    device = validated.config.resources.device
    if device not in ("auto", "cpu"):
        # A trial sees only the GPU Ray assigned it, as cuda:0; a name chosen on the driver may not exist there.
        raise ConfigError(
            "resources.device",
            device,
            "auto or cpu for xdrl tune (Ray gives each trial its GPUs through resources.gpus_per_trial; auto uses them)",
        )
    dimensions = parse_dimensions(search.space)
    check_space_keys(dimensions, base)
    check_space_values(dimensions, base, search.seed)
    if check_schema:
        from xdrl.builder.schema import metric_schema

        check_metrics(search, metric_schema(validated))
    name = search.experiment_name or f"{validated.config.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    storage_path = (
        search.storage_path if _is_uri(search.storage_path) else str(pathlib.Path(search.storage_path).resolve())
    )
    if _is_uri(storage_path) and search.searcher == "optuna" and search.study.storage is None:
        raise ConfigError(
            "search.study.storage", None, f"an Optuna RDB URL when search.storage_path is remote ({storage_path})"
        )
    experiment_dir = pathlib.Path(storage_path) / name if not _is_uri(storage_path) else pathlib.Path(".") / name
    if not _is_uri(storage_path):
        check_output_dir(pathlib.Path(storage_path), key="search.storage_path")
    collector = validated.config.collector
    iterations = -(-collector.total_frames // collector.frames_per_batch)
    check_asha_iterations(search, iterations)
    base = {**raw, "search": dataclasses.asdict(search)}
    return TunePlan(base, search, dimensions, name, storage_path, experiment_dir, iterations, list(overrides))


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
    return trainable_class_with(
        tune.with_parameters(run_trial, base=base, experiment_dir=trial_files_root(plan_)), base
    )


def trial_files_root(plan_: TunePlan) -> str | None:
    """Where trials write their own files: the experiment directory when the storage is a path.

    A path storage is one every node mounts (NFS, EFS, a local disk on one machine),
    so a trial on any node writes there directly. With a bucket URI, trials keep their
    files in Tune's staging directory on their node (Tune's results and checkpoints
    still reach the bucket).
    """
    return None if _is_uri(plan_.storage_path) else str(plan_.experiment_dir)


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
            # A trial's process ends with it (its W&B service and semaphores are released then).
            reuse_actors=False,
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
        checkpoint_config=tune.CheckpointConfig(num_to_keep=plan_.base["checkpoint"]["keep"]),
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
    from ray import tune

    # The pre-flight check replaced Tune's per-result check; evaluation metrics come every few iterations.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    _init_ray()
    location = experiment_location(plan_)
    stored = {**plan_.base, "_overrides": plan_.overrides}
    write_experiment_file(location, BASE_CONFIG, yaml.safe_dump(stored, sort_keys=False))
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
    wait_for_wandb_runs([pathlib.Path(r.path) for r in results if r.path and not _is_uri(r.path)])
    return results


def wait_for_wandb_runs(trial_dirs: list[pathlib.Path], timeout: float = 60.0) -> list[pathlib.Path]:
    """Give stopping trial processes time to finish their W&B runs before Ray shuts down.

    A trial stopped by the scheduler finishes its W&B run while its actor exits;
    the driver's Ray shutdown would cut that short. Returns the trial
    directories whose newest offline run still has no exit record afterwards.
    """
    import time

    from xdrl.wandb_records import find_run_files, read_run

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


def plan_from_directory(location: str | pathlib.Path) -> TunePlan:
    """The plan of an existing experiment (for ``xdrl tune --resume``): a local directory or a storage URI."""
    location = str(location) if _is_uri(str(location)) else str(pathlib.Path(location).resolve())
    text = read_experiment_file(location, BASE_CONFIG)
    if text is None:
        raise ConfigError("--resume", location, f"an experiment directory of xdrl tune (with {BASE_CONFIG})")
    base = yaml.safe_load(text)
    overrides = base.pop("_overrides", [])
    search = parse_search(base)
    dimensions = parse_dimensions(search.space)
    collector = base["collector"]
    iterations = -(-collector["total_frames"] // collector["frames_per_batch"])
    parent, _, name = location.rstrip("/").rpartition("/")
    directory = pathlib.Path(name) if _is_uri(location) else pathlib.Path(location)
    return TunePlan(base, search, dimensions, name, parent, directory, iterations, overrides)


def best_summary(results: Any, plan_: TunePlan) -> str:
    """The best trial's sampled values, metric and a command to re-run it."""
    search = plan_.search
    lines = [f"experiment: {plan_.experiment_dir}"]
    if not _is_uri(plan_.storage_path) and search.searcher == "optuna":
        lines.append(
            f"optuna study: {study_storage_url(search, plan_.experiment_dir)} (study {search.study.name or plan_.experiment_name})"
        )
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
    lines.append("train it: " + train_command(plan_, sampled))
    return "\n".join(lines)


def train_command(plan_: TunePlan, sampled: dict[str, Any]) -> str:
    """An ``xdrl train`` command line for one configuration of the search."""
    kept = [o for o in plan_.overrides if not o.split("=", 1)[0].lstrip("+~").startswith("search")]
    return " ".join(["xdrl train", *kept, *(f"{k}={v}" for k, v in sampled.items())])
