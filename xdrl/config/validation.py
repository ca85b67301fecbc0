"""Checks run before anything is built: one ConfigError naming the key, the value and what is accepted."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from xdrl.config.errors import ConfigError
from xdrl.config.schema import ExperimentConfig, from_mapping


@dataclasses.dataclass
class ValidatedExperiment:
    """A config that passed every check, with what the checks learned."""

    config: ExperimentConfig
    #: The algorithm's typed config (``config.algo`` as a dataclass).
    algo: Any
    #: What :func:`xdrl.builder.envs.inspect_env` found about the environment.
    env_info: Any


def _require(condition: bool, key: str, value: Any, accepted: str) -> None:
    if not condition:
        raise ConfigError(key, value, accepted)


def _positive(obj: Any, prefix: str, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        _require(value > 0, f"{prefix}.{name}", value, "a positive number")


def _check_budgets(config: ExperimentConfig) -> None:
    collector, env = config.collector, config.env
    _positive(collector, "collector", "total_frames", "frames_per_batch")
    _require(
        collector.init_random_frames >= 0, "collector.init_random_frames", collector.init_random_frames, "0 or more"
    )
    _require(
        collector.total_frames >= collector.frames_per_batch,
        "collector.total_frames",
        collector.total_frames,
        f"at least collector.frames_per_batch={collector.frames_per_batch}",
    )
    _positive(env, "env", "num_envs")
    _require(
        collector.frames_per_batch % env.num_envs == 0,
        "collector.frames_per_batch",
        collector.frames_per_batch,
        f"a multiple of env.num_envs={env.num_envs}",
    )
    if env.max_episode_steps is not None:
        _positive(env, "env", "max_episode_steps")
    _positive(config.checkpoint, "checkpoint", "interval", "keep")
    eval_config = config.hooks.eval
    _require(
        eval_config.interval_frames >= 0, "hooks.eval.interval_frames", eval_config.interval_frames, "0 (never) or more"
    )
    _require(
        eval_config.interval_frames % collector.frames_per_batch == 0,
        "hooks.eval.interval_frames",
        eval_config.interval_frames,
        f"a multiple of collector.frames_per_batch={collector.frames_per_batch} (or 0 to disable evaluation)",
    )
    if eval_config.interval_frames:
        _positive(eval_config, "hooks.eval", "max_steps", "video_fps")
    _require(
        config.hooks.policy_checkpoint.interval >= 0,
        "hooks.policy_checkpoint.interval",
        config.hooks.policy_checkpoint.interval,
        "0 (never) or more",
    )
    _require(config.resources.num_threads >= 0, "resources.num_threads", config.resources.num_threads, "0 or more")
    _require(
        config.resources.gpus_per_trial >= 0, "resources.gpus_per_trial", config.resources.gpus_per_trial, "0 or more"
    )
    _positive(config.resources, "resources", "cpus_per_trial")
    device = config.resources.device
    _require(
        re.fullmatch(r"auto|cpu|cuda(:\d+)?", device) is not None,
        "resources.device",
        device,
        "auto, cpu, cuda or cuda:N",
    )


def _check_algorithm(config: ExperimentConfig, algorithm: Any, algo: Any, env_info: Any) -> None:
    from xdrl.builder.algorithms.common import ACTIVATIONS

    space = "discrete" if env_info.discrete else "box"
    if space not in algorithm.action_spaces:
        from xdrl.builder.algorithms import ALGORITHMS

        fitting = ", ".join(name for name, a in ALGORITHMS.items() if space in a.action_spaces)
        raise ConfigError(
            "algo.name", algo.name, f"an algorithm for the {space} actions of {env_info.env_id} ({fitting})"
        )
    for field in dataclasses.fields(algo):
        value = getattr(algo, field.name)
        key = f"algo.{field.name}"
        if field.name == "activation":
            _require(value in ACTIVATIONS, key, value, "one of " + ", ".join(ACTIVATIONS))
        elif field.name == "hidden_sizes":
            _require(len(value) > 0 and all(v > 0 for v in value), key, value, "a non-empty list of positive sizes")
        elif field.name in {"gamma", "gae_lambda", "tau", "eps_init", "eps_end", "exploration_fraction"}:
            _require(0 <= value <= 1, key, value, "a number between 0 and 1")
        elif field.name in {"entropy_coef", "critic_coef"}:
            _require(value >= 0, key, value, "0 or more")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            _require(value > 0, key, value, "a positive number")
    minibatch = getattr(algo, "minibatch_size", None)
    if minibatch is not None:
        fpb = config.collector.frames_per_batch
        _require(minibatch <= fpb, "algo.minibatch_size", minibatch, f"at most collector.frames_per_batch={fpb}")
    policy_path = config.hooks.policy_checkpoint.policy_path
    if policy_path is not None and policy_path not in algorithm.policy_paths:
        raise ConfigError(
            "hooks.policy_checkpoint.policy_path",
            policy_path,
            f"null or a module of {algo.name}: " + ", ".join(algorithm.policy_paths),
        )


def validate(raw: dict[str, Any]) -> ValidatedExperiment:
    """Turn a composed config into typed objects and check it, before anything is built.

    Raises:
        ConfigError: the first problem found.
    """
    from xdrl.builder.algorithms import ALGORITHMS
    from xdrl.builder.envs import inspect_env

    config = from_mapping(ExperimentConfig, raw)
    name = config.algo.get("name")
    if name not in ALGORITHMS:
        raise ConfigError("algo.name", name, "one of " + ", ".join(sorted(ALGORITHMS)))
    algorithm = ALGORITHMS[name]
    algo = from_mapping(algorithm.config_cls, config.algo, "algo")
    _check_budgets(config)
    env_info = inspect_env(config.env)
    _check_algorithm(config, algorithm, algo, env_info)
    return ValidatedExperiment(config=config, algo=algo, env_info=env_info)
