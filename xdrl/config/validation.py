"""Checks run before anything is built: one ConfigError naming the key, the value and what is accepted."""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import re
from typing import Any

from xdrl.config.algorithms import ACTIVATIONS, ALGORITHMS, CRITIC_LOSSES, live_key_refusal
from xdrl.config.environments import COLLECTOR_IMPLEMENTATIONS, ENV_BACKENDS
from xdrl.config.errors import ConfigError
from xdrl.config.schema import ExperimentConfig, from_mapping

# Upper bounds of sizes. Past them a value is a typo (an extra 000, 1e20 for 1e5), and each
# would otherwise fail long after the start: an allocation the machine cannot hold, or a run
# that never ends.
#: 10**12 frames take over 100 days at 100,000 frames/s: longer than any run we schedule.
MAX_TOTAL_FRAMES = 10**12
#: The collector preallocates a whole batch of transitions; large GPU-simulator PPO setups
#: collect about 4096 envs x 32 steps = 131,072 frames per batch, so 2**20 leaves 8x headroom.
MAX_FRAMES_PER_BATCH = 2**20
#: Environments are stepped one after another in this process (SerialEnv), each a full gymnasium env.
MAX_NUM_ENVS = 1024
#: LazyTensorStorage allocates its whole capacity at the first write; 10**7 is ten times the
#: 10**6 transitions of the DQN and SAC reference setups.
MAX_BUFFER_SIZE = 10**7
#: A sampled (mini)batch is materialised at once on the training device: as large as a whole collected batch.
MAX_SAMPLE_SIZE = MAX_FRAMES_PER_BATCH
#: One square layer 65,536 wide holds 2**32 weights: 16 GiB in float32, 48 GiB with Adam's moments,
#: more than one GPU holds. RL networks are tens to a few thousand units wide (BRO and SimBa: 4096).
MAX_LAYER_WIDTH = 2**16
#: torch.set_num_threads fails on a C int overflow; no machine has more cores than this.
MAX_NUM_THREADS = 1024
#: numpy's global seed (``np.random.seed``) accepts 0 to 2**32 - 1 only.
MAX_SEED = 2**32 - 1
#: The size bounds of the algorithm keys that allocate (``algo.<name>``).
ALGO_MAXIMA = {"buffer_size": MAX_BUFFER_SIZE, "batch_size": MAX_SAMPLE_SIZE, "minibatch_size": MAX_SAMPLE_SIZE}

#: A name that becomes one directory or file name: no separator, no ``..``, no leading dot or dash.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
SAFE_NAME_TEXT = "letters, digits, '.', '_' or '-', starting with a letter or digit, at most 128 characters"
#: W&B's alphabet of run ids (an id also names the run's files).
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


@dataclasses.dataclass
class ValidatedExperiment:
    """A config that passed every check, with what the checks learned."""

    config: ExperimentConfig
    #: The algorithm's typed config (``config.algo`` as a dataclass).
    algo: Any
    #: What :func:`xdrl.config.environments.inspect_env` found about the environment.
    env_info: Any


def _require(condition: bool, key: str, value: Any, accepted: str) -> None:
    if not condition:
        raise ConfigError(key, value, accepted)


def _positive(obj: Any, prefix: str, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        _require(value > 0, f"{prefix}.{name}", value, "a positive number")


def _at_most(key: str, value: Any, maximum: int, what: str) -> None:
    _require(value <= maximum, key, value, f"at most {maximum:_} {what}")


def check_name(key: str, value: Any) -> None:
    """A name that becomes part of a path must stay one path component.

    Examples:
        >>> check_name("name", "cartpole_ppo-v1.2")
        >>> check_name("name", "../../etc")
        Traceback (most recent call last):
        ...
        xdrl.config.errors.ConfigError: name='../../etc' is not accepted: expected letters, digits, '.', '_' or '-', starting with a letter or digit, at most 128 characters (it becomes part of a file path or URL)
    """
    _require(
        isinstance(value, str) and SAFE_NAME.fullmatch(value) is not None,
        key,
        value,
        f"{SAFE_NAME_TEXT} (it becomes part of a file path or URL)",
    )


def _check_names(config: ExperimentConfig) -> None:
    check_name("name", config.name)
    logger = config.logger
    for name in ("project", "group", "run_name"):
        if getattr(logger, name) is not None:
            check_name(f"logger.{name}", getattr(logger, name))
    if logger.run_id is not None:
        _require(
            RUN_ID.fullmatch(logger.run_id) is not None,
            "logger.run_id",
            logger.run_id,
            "null or a W&B run id: letters, digits, '_' or '-', at most 128 characters (it names the run's files)",
        )
    check_name("hooks.policy_checkpoint.prefix", config.hooks.policy_checkpoint.prefix)


def _check_budgets(config: ExperimentConfig) -> None:
    collector, env = config.collector, config.env
    _require(
        0 <= config.seed <= MAX_SEED,
        "seed",
        config.seed,
        f"an integer from 0 to 2**32 - 1 = {MAX_SEED} (numpy's seed range)",
    )
    _positive(collector, "collector", "total_frames", "frames_per_batch")
    _at_most("collector.total_frames", collector.total_frames, MAX_TOTAL_FRAMES, "frames")
    _at_most("collector.frames_per_batch", collector.frames_per_batch, MAX_FRAMES_PER_BATCH, "frames per batch")
    _require(
        collector.init_random_frames >= 0, "collector.init_random_frames", collector.init_random_frames, "0 or more"
    )
    _require(
        collector.init_random_frames <= collector.total_frames,
        "collector.init_random_frames",
        collector.init_random_frames,
        f"at most collector.total_frames={collector.total_frames}",
    )
    _require(
        collector.total_frames >= collector.frames_per_batch,
        "collector.total_frames",
        collector.total_frames,
        f"at least collector.frames_per_batch={collector.frames_per_batch}",
    )
    _require(
        collector.env_backend in ENV_BACKENDS,
        "collector.env_backend",
        collector.env_backend,
        "one of " + ", ".join(ENV_BACKENDS),
    )
    _require(
        collector.implementation in COLLECTOR_IMPLEMENTATIONS,
        "collector.implementation",
        collector.implementation,
        "one of " + ", ".join(COLLECTOR_IMPLEMENTATIONS),
    )
    _positive(env, "env", "num_envs")
    _at_most("env.num_envs", env.num_envs, MAX_NUM_ENVS, "environments")
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
        _positive(eval_config, "hooks.eval", "max_steps", "video_fps", "episodes")
        # The episodes are environments of one batched evaluation env.
        _at_most("hooks.eval.episodes", eval_config.episodes, MAX_NUM_ENVS, "episodes")
    _require(
        config.hooks.policy_checkpoint.interval >= 0,
        "hooks.policy_checkpoint.interval",
        config.hooks.policy_checkpoint.interval,
        "0 (never) or more",
    )
    _require(config.resources.num_threads >= 0, "resources.num_threads", config.resources.num_threads, "0 or more")
    _at_most("resources.num_threads", config.resources.num_threads, MAX_NUM_THREADS, "threads")
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
    space = "discrete" if env_info.discrete else "box"
    if space not in algorithm.action_spaces:
        fitting = ", ".join(name for name, a in ALGORITHMS.items() if space in a.action_spaces)
        raise ConfigError(
            "algo.name", algo.name, f"an algorithm for the {space} actions of {env_info.env_id} ({fitting})"
        )
    for field in dataclasses.fields(algo):
        value = getattr(algo, field.name)
        key = f"algo.{field.name}"
        if field.name == "activation":
            _require(value in ACTIVATIONS, key, value, "one of " + ", ".join(ACTIVATIONS))
        elif field.name == "critic_loss":
            _require(value in CRITIC_LOSSES, key, value, "one of " + ", ".join(CRITIC_LOSSES))
        elif field.name == "hidden_sizes":
            _require(
                len(value) > 0 and all(0 < v <= MAX_LAYER_WIDTH for v in value),
                key,
                value,
                f"a non-empty list of layer sizes from 1 to {MAX_LAYER_WIDTH}",
            )
        elif field.name in {"gamma", "gae_lambda", "tau", "eps_init", "eps_end", "exploration_fraction"}:
            _require(0 <= value <= 1, key, value, "a number between 0 and 1")
        elif field.name == "target_entropy":
            _require(value is None or math.isfinite(value), key, value, "null (minus the action dimension) or a number")
        elif field.name in {"entropy_coef", "critic_coef"}:
            _require(value >= 0, key, value, "0 or more")
        elif field.name == "lr":
            # 0 keeps the weights as they are: a warm start (init.policy) evaluated as it was loaded.
            _require(value >= 0, key, value, "0 or more")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            _require(value > 0, key, value, "a positive number")
            if field.name in ALGO_MAXIMA:
                _at_most(key, value, ALGO_MAXIMA[field.name], "transitions")
    minibatch = getattr(algo, "minibatch_size", None)
    if minibatch is not None:
        fpb = config.collector.frames_per_batch
        _require(minibatch <= fpb, "algo.minibatch_size", minibatch, f"at most collector.frames_per_batch={fpb}")
    for key in config.hooks.hparams:
        live = ", ".join(f"algo.{k}" for k in algorithm.live_keys)
        _require(
            isinstance(key, str) and live_key_refusal(algo.name, key) is None,
            "hooks.hparams",
            key,
            f"keys a live {algo.name} trainer can change: {live}",
        )
    policy_path = config.hooks.policy_checkpoint.policy_path
    if policy_path is not None and policy_path not in algorithm.policy_paths:
        raise ConfigError(
            "hooks.policy_checkpoint.policy_path",
            policy_path,
            f"null or a module of {algo.name}: " + ", ".join(algorithm.policy_paths),
        )


def _check_init(config: ExperimentConfig) -> None:
    """``init.policy`` names a policy file (kept as the resolved file, so the record says what was loaded)."""
    from xdrl.records.runs import PolicyFileError, resolve_policy

    if config.init.policy is None:
        return
    try:
        config.init.policy = str(resolve_policy(config.init.policy))
    except PolicyFileError as error:
        raise ConfigError(
            "init.policy", config.init.policy, f"null, a policy checkpoint file or a run directory with one ({error})"
        ) from error


def validate(raw: dict[str, Any]) -> ValidatedExperiment:
    """Turn a composed config into typed objects and check it, before anything is built.

    Raises:
        ConfigError: the first problem found.
    """
    config = from_mapping(ExperimentConfig, raw)
    _check_names(config)
    _check_budgets(config)
    _check_init(config)
    # The env check imports gymnasium (seconds): after the checks that need nothing.
    from xdrl.config.environments import inspect_env

    name = config.algo.get("name")
    if name not in ALGORITHMS:
        raise ConfigError("algo.name", name, "one of " + ", ".join(sorted(ALGORITHMS)))
    algorithm = ALGORITHMS[name]
    algo = from_mapping(algorithm.config_cls, config.algo, "algo")
    env_info = inspect_env(config.env)
    _check_algorithm(config, algorithm, algo, env_info)
    _check_schedule(config, algorithm, algo, env_info)
    # The scheduled keys are logged as hparams/<key> (the values in force), like PBT's mutated keys.
    scheduled = [key for entry in config.schedule for key in entry.values]
    config.hooks.hparams = list(dict.fromkeys([*config.hooks.hparams, *scheduled]))
    return ValidatedExperiment(config=config, algo=algo, env_info=env_info)


def _check_schedule(config: ExperimentConfig, algorithm: Any, algo: Any, env_info: Any) -> None:
    """``schedule``: live keys only, ascending frames within the run, values the config accepts where they apply.

    Each entry is checked with every value in force from its frames on (the ``algo`` values
    with the entries so far applied), by the checks of ``algo`` itself.
    """
    live = ", ".join(f"algo.{k}" for k in algorithm.live_keys)
    in_force = dict(config.algo)
    previous = -1
    total = config.collector.total_frames
    for index, entry in enumerate(config.schedule):
        where = f"schedule[{index}]"
        _require(
            entry.frames > previous,
            f"{where}.frames",
            entry.frames,
            "0 or more" if index == 0 else f"more than schedule[{index - 1}].frames={previous} (ascending frames)",
        )
        _require(
            entry.frames < total,
            f"{where}.frames",
            entry.frames,
            f"fewer than collector.total_frames={total} (no batch starts later: the entry would never apply)",
        )
        previous = entry.frames
        _require(
            bool(entry.values), f"{where}.values", entry.values, "a non-empty mapping of live algo.* keys to values"
        )
        for key, value in entry.values.items():
            reason = live_key_refusal(algo.name, key) if isinstance(key, str) else "not a dotted config key"
            _require(
                reason is None,
                f"{where}.values.{key}",
                value,
                f"keys a live {algo.name} trainer can change ({live}); {key} cannot: {reason}",
            )
            in_force[key.removeprefix("algo.")] = value
        try:
            scheduled = from_mapping(algorithm.config_cls, in_force, "algo")
            _check_algorithm(config, algorithm, scheduled, env_info)
            # Typed as the config types them (an int learning rate becomes a float).
            entry.values = {key: getattr(scheduled, key.removeprefix("algo.")) for key in entry.values}
        except ConfigError as error:
            name = error.key.removeprefix("algo.")
            key = f"algo.{name}" if f"algo.{name}" in entry.values else None
            if key is None:  # a limit across keys, or a value of an earlier entry still in force
                raise ConfigError(
                    where, entry.values, f"values the config accepts from frame {entry.frames} on ({error})"
                ) from error
            raise ConfigError(
                f"{where}.values.{key}", error.value, f"values the config accepts ({error.accepted})"
            ) from error


# Checks against this host, for ``xdrl train``: a Tune trial's host and GPU are Ray's choice.


def check_device_here(device: str) -> None:
    """``resources.device`` must name a device this host has.

    Raises:
        ConfigError: ``cuda`` or ``cuda:N`` beyond the CUDA devices torch sees.
    """
    if device in ("auto", "cpu"):
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    _, _, index = device.partition(":")
    if int(index or 0) < count:
        return
    here = ["auto", "cpu", *(["cuda", *(f"cuda:{i}" for i in range(count))] if count else [])]
    raise ConfigError(
        "resources.device", device, f"a device of this host: {', '.join(here)} (torch sees {count} CUDA devices)"
    )


def check_output_dir(path: pathlib.Path, key: str = "output_dir") -> None:
    """``path`` can become a directory of results: not a file, and inside a directory this process may write.

    Raises:
        ConfigError: for ``key``: ``path`` or the nearest of its parents that exists is a
            file, or that parent is not writable.
    """
    if path.exists() and not path.is_dir():
        raise ConfigError(key, str(path), "a directory (this path is a file)")
    existing = path
    while not existing.exists():  # mkdir starts below the nearest existing parent
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(key, str(path), f"a path below a directory ({existing} is a file)")
    # os.access asks the kernel (it knows root's powers and read-only mounts): no probe file needed.
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(key, str(path), f"a directory this user can write ({existing} is not writable)")
