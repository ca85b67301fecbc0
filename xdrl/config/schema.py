"""Typed experiment configuration.

The YAML files in ``configs/`` hold every default; these dataclasses hold the
types and the checks, and have no defaults of their own (one place for
defaults). :func:`from_mapping` turns a composed Hydra config into them and
reports the first bad key as a :class:`~xdrl.config.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from xdrl.config.errors import ConfigError


@dataclasses.dataclass
class EnvConfig:
    """The environment: any installed gymnasium or MO-Gymnasium id."""

    id: str
    #: One weight per objective of a multi-objective env (its reward is their weighted sum).
    reward_weights: list[float] | None
    #: Running mean/std normalisation of vector observations.
    normalize_observations: bool
    #: Episode cap (``None``: the env's own time limit).
    max_episode_steps: int | None
    #: Environments stepped together by the collector.
    num_envs: int
    #: Multi-objective envs: the reference point of hypervolumes in ``xdrl report`` (one value per objective).
    reference_point: list[float] | None


@dataclasses.dataclass
class CollectorConfig:
    """How much data, in what portions."""

    total_frames: int
    frames_per_batch: int
    #: Frames collected with a random policy before training starts (off-policy).
    init_random_frames: int
    #: How the env.num_envs training envs step together: vector, serial or parallel.
    env_backend: str
    #: Whose collector steps them: xdrl (its own, for vector envs) or torchrl.
    implementation: str


@dataclasses.dataclass
class EvalConfig:
    """Periodic evaluation rollouts."""

    interval_frames: int
    max_steps: int
    #: Episodes per evaluation, played side by side (a batched env), each to its end or ``max_steps``.
    episodes: int
    deterministic: bool
    non_deterministic: bool
    video: bool
    video_fps: int


@dataclasses.dataclass
class PolicyCheckpointConfig:
    """Policy weights saved for offline analysis."""

    #: Iterations between two policy files (0: none).
    interval: int
    prefix: str
    #: Dotted path of the module on the trainer, such as ``loss_module.actor_network``
    #: (``null``: the algorithm's policy).
    policy_path: str | None


@dataclasses.dataclass
class HooksConfig:
    """The xdrl hook set."""

    group: str
    reduce_stats: bool | None
    eval: EvalConfig
    policy_checkpoint: PolicyCheckpointConfig
    #: Config keys (``algo.*`` a live trainer can change) whose values in force are logged every
    #: iteration as ``hparams/<key>``, read back from the live optimizer, loss and schedules.
    #: ``xdrl tune`` with a PBT scheduler adds its mutable keys.
    hparams: list[str]


@dataclasses.dataclass
class InitConfig:
    """Where training starts from."""

    #: A policy checkpoint file, or a run directory (its newest policy file), whose weights the
    #: policy starts from (a warm start); stored as the resolved file. ``null``: fresh weights.
    policy: str | None


@dataclasses.dataclass
class CheckpointConfig:
    """Full trainer checkpoints (what ``--resume`` loads)."""

    #: Iterations between two trainer checkpoints.
    interval: int
    #: Newest checkpoints kept on disk.
    keep: int


@dataclasses.dataclass
class LoggerConfig:
    """Where metrics go besides ``metrics.jsonl`` (always written)."""

    backend: Literal["wandb", "csv", "none"]
    #: ``auto``: online when a W&B API key is configured, offline otherwise.
    mode: Literal["auto", "online", "offline"]
    project: str
    group: str | None
    run_name: str | None
    run_id: str | None
    #: A file on the node holding the W&B API key, read by each run when its environment has no
    #: ``WANDB_API_KEY`` (null: the file named by ``XDRL_WANDB_API_KEY_FILE``, if any).
    api_key_file: str | None


@dataclasses.dataclass
class ResourcesConfig:
    """Where the trainer runs."""

    #: ``auto`` (the GPU assigned to this process, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    device: str
    gpus_per_trial: float
    cpus_per_trial: float
    #: torch intra-op threads (0: leave torch's default).
    num_threads: int


@dataclasses.dataclass
class AshaConfig:
    """ASHA's rungs, in trainer iterations."""

    grace_period: int
    reduction_factor: float
    #: null: every iteration of the run.
    max_t: int | None


@dataclasses.dataclass
class PbtConfig:
    """Population-based training (``search.scheduler=pbt`` or ``pb2``), in trainer iterations."""

    #: Iterations between two exploit/explore decisions of a member: a multiple of ``checkpoint.interval``.
    perturbation_interval: int
    #: Share of the population in the top (donors) and the bottom (exploiters) quantile.
    quantile_fraction: float
    #: PBT: chance that an explored value is drawn anew instead of perturbed (x0.8 or x1.2).
    resample_probability: float
    #: The keys a member changes when it exploits, with their ranges (the syntax of ``search.space``).
    mutations: dict[str, Any]
    #: Candidate mutations per algorithm (``mutations`` usually points at one).
    spaces: dict[str, Any]
    #: Off-policy members: an exploit copies the donor's replay buffer (true) or keeps its own (false).
    copy_replay_buffer: bool


@dataclasses.dataclass
class StudyConfig:
    """Where Optuna keeps its study."""

    #: An Optuna RDB URL; null: sqlite file ``optuna.db`` in the experiment directory.
    #: Stored and printed with its password as ``***``.
    storage: str | None
    #: null: the experiment name.
    name: str | None
    #: A file on the driver's node holding the database password of ``storage``, read when
    #: ``XDRL_STUDY_PASSWORD`` is not set there.
    password_file: str | None


@dataclasses.dataclass
class SearchConfig:
    """A Ray Tune search over an experiment (``configs/search/``)."""

    searcher: Literal["optuna", "random", "grid"]
    scheduler: Literal["asha", "pbt", "pb2", "none"]
    #: Nested mapping whose leaves (mappings with a ``type``) are distributions; the path is the config key.
    space: dict[str, Any]
    #: Candidate spaces per algorithm (``space`` usually points at one).
    spaces: dict[str, Any]
    num_samples: int
    max_concurrent_trials: int
    metric: str | list[str]
    mode: Literal["min", "max"] | list[Literal["min", "max"]]
    scheduler_metric: str | None
    seed: int
    asha: AshaConfig
    pbt: PbtConfig
    study: StudyConfig
    storage_path: str
    experiment_name: str | None
    max_failures: int
    #: Run the next trial in a finished trial's worker process (Tune's ``reuse_actors``).
    reuse_actors: bool


@dataclasses.dataclass
class ScheduleEntry:
    """One step of a hyperparameter schedule (``schedule``): values put in force at a frame count."""

    #: The values apply from the first iteration whose batch starts at or after this many frames.
    frames: int
    #: Live ``algo.*`` keys (dotted, as in ``hooks.hparams``) and their new values.
    values: dict[str, Any]


@dataclasses.dataclass
class ExperimentConfig:
    """One experiment: what ``xdrl train`` runs and what a Tune trial runs."""

    name: str
    seed: int
    output_dir: str
    init: InitConfig
    env: EnvConfig
    #: Validated against the algorithm registry (``algo.name`` picks the schema).
    algo: dict[str, Any]
    collector: CollectorConfig
    hooks: HooksConfig
    checkpoint: CheckpointConfig
    logger: LoggerConfig
    resources: ResourcesConfig
    #: The Ray Tune search (``null`` for plain training).
    search: dict[str, Any] | None
    #: Hyperparameter values put in force on the live trainer at given frame counts, in ascending
    #: frames (``[]``: the ``algo`` values throughout). ``xdrl confirm`` re-runs a PBT member's this way.
    schedule: list[ScheduleEntry]


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a finite number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _finite(number: int | float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an int beyond any float
        return False


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, key)
    if origin in (types.UnionType, typing.Union):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _convert(option, value, key)
            except ConfigError as error:
                errors.append(error)
        # A list with one bad item fits its option but for that item: naming the item says more.
        inner = [error for error in errors if error.key != key]
        raise inner[0] if inner else ConfigError(key, value, _describe(tp))
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(key, value, _describe(tp))
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(key, value, _describe(tp))
        (item_type,) = typing.get_args(tp)
        return [_convert(item_type, item, f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(key, value, "a mapping")
        return dict(value)
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(key, value, "null")
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        # inf and nan are floats to YAML and Hydra, but no setting of an experiment means them:
        # they pass "> 0" checks and surface later as nan losses or a hung scheduler.
        if isinstance(value, int | float) and not isinstance(value, bool) and _finite(value):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(key, value, _describe(tp))


def from_mapping(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, checking keys and types.

    Raises:
        ConfigError: for an unknown key (with the accepted keys), a missing key or
            a value of the wrong type (``inf`` and ``nan`` are not accepted as numbers);
            the key is the full dotted path.

    Examples:
        >>> from_mapping(CheckpointConfig, {"interval": 5, "keep": 2}, "checkpoint")
        CheckpointConfig(interval=5, keep=2)
        >>> from_mapping(CheckpointConfig, {"interval": 5, "kept": 2}, "checkpoint")
        Traceback (most recent call last):
        ...
        xdrl.config.errors.ConfigError: checkpoint.kept=2 is not accepted: expected one of the keys interval, keep
        >>> from_mapping(AshaConfig, {"grace_period": 1, "reduction_factor": float("inf"), "max_t": None}, "search.asha")
        Traceback (most recent call last):
        ...
        xdrl.config.errors.ConfigError: search.asha.reduction_factor=inf is not accepted: expected a finite number
    """
    if not isinstance(data, Mapping):
        raise ConfigError(prefix or cls.__name__, data, f"a mapping with keys {', '.join(_field_names(cls))}")
    hints = typing.get_type_hints(cls)
    names = _field_names(cls)
    dotted = (lambda name: f"{prefix}.{name}") if prefix else (lambda name: name)
    for name in data:
        if name not in names:
            raise ConfigError(dotted(name), data[name], f"one of the keys {', '.join(names)}")
    values = {}
    for name in names:
        if name not in data:
            raise ConfigError(dotted(name), "<missing>", f"a value ({_describe(hints[name])})")
        values[name] = _convert(hints[name], data[name], dotted(name))
    return cls(**values)


def _field_names(cls: type) -> list[str]:
    return [field.name for field in dataclasses.fields(cls)]


def to_dict(config: Any) -> Any:
    """A dataclass config back to plain dicts and lists (for YAML and W&B)."""
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
