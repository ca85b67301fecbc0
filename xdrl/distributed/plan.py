"""What ``xdrl tune`` decides before any cluster resource is used: the checked config, space and storage.

:func:`plan` composes and validates the experiment and its search (every check of
:mod:`xdrl.config.search`, plus the metric schema of the hook set); an existing
experiment's plan is read back from its directory for ``xdrl tune --resume``;
:func:`check_storage_reaches_every_node` is the one check that needs the cluster's
node list, which the tuner passes in once Ray is connected. No Ray here.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from xdrl.config import ConfigError, compose_config, validate
from xdrl.config.loading import with_new_defaults
from xdrl.config.search import (
    check_asha_iterations,
    check_grid,
    check_metrics,
    check_pbt,
    check_space_keeps_shapes,
    check_space_keys,
    check_space_values,
    parse_dimensions,
    parse_search,
)
from xdrl.config.validation import check_output_dir
from xdrl.records import experiment as experiment_files
from xdrl.records.experiment import BASE_CONFIG, is_uri, read_base_config, with_override


def iterations_of(total_frames: int, frames_per_batch: int) -> int:
    """Trainer iterations of a run: one per batch, the last one possibly partial (TorchRL collects it whole)."""
    return -(-total_frames // frames_per_batch)


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


def experiment_location(plan_: TunePlan) -> str:
    """Where the experiment lives: a local directory or ``<storage URI>/<name>``."""
    return experiment_files.experiment_location(plan_.storage_path, plan_.experiment_name)


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
    if validated.config.init.policy is not None:
        # Every trial starts from the same weights: the file as validation resolved it, in the base and in
        # the overrides the best trial's `xdrl train` line is made of.
        check_space_keeps_shapes(dimensions)
        raw["init"]["policy"] = validated.config.init.policy
        overrides = with_override(overrides, "init.policy", validated.config.init.policy)
    collector = validated.config.collector
    iterations = iterations_of(collector.total_frames, collector.frames_per_batch)
    # Before the space's checks: with PBT the space is usually the mutations, and a key that cannot
    # change mid-run is refused for that reason first.
    mutated = check_pbt(search, base, iterations)
    if mutated:
        # Every member logs the values in force of the mutated keys (hparams/<key>): the schedule.
        raw["hooks"]["hparams"] = list(dict.fromkeys([*raw["hooks"]["hparams"], *(d.key for d in mutated)]))
        base = {**raw, "search": None}
        validated = validate(base)
    check_grid(search, dimensions)
    check_space_keys(dimensions, base)
    check_space_values(dimensions, base, search.seed)
    if validated.config.init.policy is not None:
        from xdrl.builder.warm_start import check_warm_start

        check_warm_start(validated)
    if check_schema:
        from xdrl.builder.schema import metric_schema

        check_metrics(search, metric_schema(validated))
    name = search.experiment_name or f"{validated.config.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    storage_path = (
        search.storage_path if is_uri(search.storage_path) else str(pathlib.Path(search.storage_path).resolve())
    )
    if is_uri(storage_path) and search.searcher == "optuna" and search.study.storage is None:
        raise ConfigError(
            "search.study.storage", None, f"an Optuna RDB URL when search.storage_path is remote ({storage_path})"
        )
    experiment_dir = pathlib.Path(storage_path) / name if not is_uri(storage_path) else pathlib.Path(".") / name
    if not is_uri(storage_path):
        check_output_dir(pathlib.Path(storage_path), key="search.storage_path")
    check_asha_iterations(search, iterations)
    base = {**raw, "search": dataclasses.asdict(search)}
    return TunePlan(base, search, dimensions, name, storage_path, experiment_dir, iterations, list(overrides))


def check_storage_reaches_every_node(
    plan_: TunePlan, nodes: Sequence[Mapping[str, Any]], *, resume: bool = False
) -> None:
    """Refuse a relative local ``search.storage_path`` on a cluster of more than one node.

    A relative path resolves against the driver's working directory. Under ``ray job
    submit`` that is the job's temporary copy of the code on the head: no other node sees
    it and it goes away with the job, so trials elsewhere could not write there and the
    results would vanish. The storage must be an absolute path on a mount every node
    shares, or a bucket URI. The tuner calls this right after connecting to Ray (a
    Ray job, ``RAY_ADDRESS``, or a cluster found on this machine: the node list says
    which), before anything is written or any trial starts.

    Args:
        plan_: what :func:`plan` decided; ``plan_.search.storage_path`` is the value as given.
        nodes: the cluster's nodes as ``ray.nodes()`` lists them (their ``Alive`` flag counts).
        resume: the experiment is restored from a location given on the command line, which
            exists: the check is for the storage a new experiment picks.

    Raises:
        ConfigError: for ``search.storage_path``: a relative local path while more than one
            node is alive.
    """
    given = plan_.search.storage_path
    alive = sum(1 for node in nodes if node.get("Alive"))
    if resume or alive <= 1 or is_uri(given) or pathlib.Path(given).is_absolute():
        return
    raise ConfigError(
        "search.storage_path",
        given,
        f"an absolute path on a mount every node shares (like /mnt/results) or a bucket URI (s3://, gs://): "
        f"the cluster has {alive} nodes and a relative path stays on this one, in the driver's working "
        f"directory ({plan_.storage_path}; under `ray job submit`, the job's temporary copy of the code)",
    )


def trial_files_root(plan_: TunePlan) -> str | None:
    """Where trials write their own files: the experiment directory when the storage is a path.

    A path storage is one every node mounts (NFS, EFS, a local disk on one machine),
    so a trial on any node writes there directly. With a bucket URI, trials keep their
    files in Tune's staging directory on their node (Tune's results and checkpoints
    still reach the bucket).
    """
    return None if is_uri(plan_.storage_path) else str(plan_.experiment_dir)


def plan_from_directory(location: str | pathlib.Path) -> TunePlan:
    """The plan of an existing experiment (for ``xdrl tune --resume``): a local directory or a storage URI."""
    location = str(location) if is_uri(str(location)) else str(pathlib.Path(location).resolve())
    stored = read_base_config(location)
    if stored is None:
        raise ConfigError("--resume", location, f"an experiment directory of xdrl tune (with {BASE_CONFIG})")
    base, overrides = stored
    base = with_new_defaults(base)  # an experiment stored by an earlier xdrl
    search = parse_search(base)
    dimensions = parse_dimensions(search.space)
    collector = base["collector"]
    iterations = iterations_of(collector["total_frames"], collector["frames_per_batch"])
    parent, _, name = location.rstrip("/").rpartition("/")
    directory = pathlib.Path(name) if is_uri(location) else pathlib.Path(location)
    return TunePlan(base, search, dimensions, name, parent, directory, iterations, overrides)
