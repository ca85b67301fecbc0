"""``build(config, device) -> Experiment``: the one build path of ``xdrl train`` and of every Tune trial.

Reads top to bottom like the recipe: environment, algorithm (models, loss,
collector, TorchRL trainer), then the xdrl hook set in stage order, then the
loggers. Nothing here knows Ray.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import pathlib
import random
import uuid
from typing import Any

import numpy as np
import torch
from torchrl.trainers import Trainer

from xdrl.builder.algorithms import BUILDERS, AlgorithmParts, BuildContext
from xdrl.builder.algorithms.common import apply_hyperparameters
from xdrl.builder.checkpointing import PREEMPTED, TrainerCheckpointHook, remove_interrupted_saves, set_rng_state
from xdrl.builder.envs import EPISODE_VECTOR_REWARD, VECTOR_REWARD, make_env, observation_statistics
from xdrl.builder.loggers import make_csv_logger, make_wandb_logger
from xdrl.builder.metrics import MetricsRouter
from xdrl.builder.schedule import HyperparameterSchedule
from xdrl.builder.warm_start import load_policy_state
from xdrl.config.algorithms import ALGORITHMS
from xdrl.config.validation import ValidatedExperiment
from xdrl.records.atomic import remove_partial_writes
from xdrl.records.lineage import HPARAMS
from xdrl.trainer_hooks import (
    LoggingEvaluationHookSet,
    LoggingHookSet,
    PolicyCheckpointHook,
    WandbFinishHook,
    WandbFlushHook,
)
from xdrl.trainer_hooks.shutdown import ensure_shutdown_on_error

_log = logging.getLogger(__name__)


@dataclasses.dataclass
class Experiment:
    """A built experiment, ready for ``run``."""

    validated: ValidatedExperiment
    output_dir: pathlib.Path
    device: torch.device
    trainer: Trainer
    parts: AlgorithmParts
    hooks: LoggingHookSet
    router: MetricsRouter
    checkpoints: TrainerCheckpointHook
    policies: PolicyCheckpointHook
    run_id: str
    #: The config's ``schedule`` on the live trainer (no entries: nothing to do).
    schedule: HyperparameterSchedule | None = None

    @property
    def config(self) -> Any:
        return self.validated.config

    def announce_preemption(self) -> None:
        """Tell the W&B run (if any) that its machine is going away and the run will be resumed."""
        wandb_logger = self.router.named_loggers.get("wandb")
        if wandb_logger is not None:
            mark_wandb_preempting(wandb_logger, PREEMPTED)


def resolve_device(name: str) -> torch.device:
    """``auto``: the first visible CUDA device (Ray restricts visibility to the trial's GPU), else CPU."""
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_process(config: Any) -> None:
    """The process-wide settings of a run: torch's threads (``resources.num_threads``) and the seeds."""
    if config.resources.num_threads:
        torch.set_num_threads(config.resources.num_threads)
    seed_everything(config.seed)


def build_algorithm(
    validated: ValidatedExperiment,
    device: torch.device | str | None = None,
    *,
    logger: Any = None,
    observation_norm: Any = None,
    progress_bar: bool = False,
) -> AlgorithmParts:
    """The experiment's TorchRL trainer, models and collector, without the xdrl hook set.

    :func:`build` adds the hooks; tests and benchmarks of single hooks register them on this
    (after :func:`prepare_process`, for the config's threads and seed).

    Args:
        validated: a config that passed :func:`xdrl.config.validate`.
        device: where models train (default: ``resources.device``).
        logger: the trainer's logger.
        observation_norm: normalisation statistics (``env.normalize_observations``; computed when omitted).
        progress_bar: show TorchRL's progress bar.
    """
    config, info = validated.config, validated.env_info
    device = resolve_device(config.resources.device) if device is None else torch.device(device)
    if observation_norm is None and config.env.normalize_observations:
        observation_norm = observation_statistics(config.env, info, seed=config.seed)
    algorithm = ALGORITHMS[validated.algo.name]
    return BUILDERS[validated.algo.name](
        validated.algo,
        BuildContext(
            env_info=info,
            make_env=functools.partial(
                make_env,
                config.env,
                info,
                seed=config.seed,
                observation_norm=observation_norm,
                backend=config.collector.env_backend,
            ),
            device=device,
            seed=config.seed,
            total_frames=config.collector.total_frames,
            frames_per_batch=config.collector.frames_per_batch,
            init_random_frames=config.collector.init_random_frames if algorithm.off_policy else 0,
            logger=logger,
            progress_bar=progress_bar,
            collector_implementation=config.collector.implementation,
        ),
    )


#: The evaluation environments' seed is the run's seed plus this: evaluations start from other
#: states than training does, and every evaluation of a run from the same ones (the hooks reseed).
EVAL_SEED_OFFSET = 10_000


def eval_seed(config: Any) -> int:
    """The seed every evaluation of a run starts from (``xdrl eval`` uses it by default)."""
    return config.seed + EVAL_SEED_OFFSET


def make_eval_env(
    validated: ValidatedExperiment,
    observation_norm: Any,
    *,
    episodes: int | None = None,
    render: bool | None = None,
) -> Any:
    """The evaluation environment: ``episodes`` (default ``hooks.eval.episodes``) environments side by side.

    Seeded with :func:`eval_seed`; ``render`` (default ``hooks.eval.video``) creates them
    with ``render_mode="rgb_array"``.
    """
    config = validated.config
    return make_env(
        config.env,
        validated.env_info,
        seed=eval_seed(config),
        num_envs=config.hooks.eval.episodes if episodes is None else episodes,
        render=config.hooks.eval.video if render is None else render,
        observation_norm=observation_norm,
    )


def logging_hook_set(validated: ValidatedExperiment, policy: Any, eval_env: Any) -> LoggingHookSet:
    """The experiment's metric hooks (collection, training, counters, timers, evaluation), not registered.

    With ``hooks.eval.interval_frames`` set, the evaluation set plays ``policy`` on ``eval_env``
    (see :func:`make_eval_env`), every evaluation from the same seed.
    """
    config, info = validated.config, validated.env_info
    hooks_config = config.hooks
    multi_objective = info.multi_objective
    eval_set = None
    if hooks_config.eval.interval_frames:
        eval_set = LoggingEvaluationHookSet(
            policy=policy,
            environment=eval_env,
            group=hooks_config.group,
            interval_frames=hooks_config.eval.interval_frames,
            max_steps=hooks_config.eval.max_steps,
            deterministic=hooks_config.eval.deterministic,
            non_deterministic=hooks_config.eval.non_deterministic,
            render=hooks_config.eval.video,
            video_fps=hooks_config.eval.video_fps,
            reward_key=("next", "reward"),  # the scalarized reward of a multi-objective env
            reduce_stats=hooks_config.reduce_stats,
            seed=eval_seed(config),
        )
    return LoggingHookSet(
        group=hooks_config.group,
        frame_skip=1,
        reward_key=("next", VECTOR_REWARD if multi_objective else "reward"),
        episode_reward_key=("next", EPISODE_VECTOR_REWARD if multi_objective else "episode_reward"),
        episode_reward_weights=config.env.reward_weights if multi_objective else None,
        reduce_stats=hooks_config.reduce_stats,
        eval_hook_set=eval_set,
    )


def build(
    validated: ValidatedExperiment,
    device: torch.device | str | None = None,
    *,
    output_dir: str | pathlib.Path,
    run_id: str | None = None,
    progress_bar: bool = False,
) -> Experiment:
    """Build the TorchRL trainer with the full xdrl hook set, registered here in stage order.

    Args:
        validated: a config that passed :func:`xdrl.config.validate`.
        device: where models train (default: ``resources.device``).
        output_dir: where checkpoints, policies, metrics and W&B files go.
        run_id: the W&B run id (default: ``logger.run_id``, else a new one).
        progress_bar: show TorchRL's progress bar.
    """
    config, info = validated.config, validated.env_info
    output_dir = pathlib.Path(output_dir)
    device = resolve_device(config.resources.device) if device is None else torch.device(device)
    prepare_process(config)
    run_id = run_id or config.logger.run_id or uuid.uuid4().hex[:12]

    # Environments ------------------------------------------------------------------------
    norm = observation_statistics(config.env, info, seed=config.seed) if config.env.normalize_observations else None
    eval_env = make_eval_env(validated, norm) if config.hooks.eval.interval_frames else None

    # Metrics: every metric goes through the router to the configured loggers ---------
    loggers: dict[str, Any] = {}
    if config.logger.backend == "wandb":
        loggers["wandb"] = make_wandb_logger(config, output_dir, run_id)
    elif config.logger.backend == "csv":
        loggers["csv"] = make_csv_logger(config, output_dir)
    router = MetricsRouter(output_dir / "metrics.jsonl", loggers)

    # Algorithm: models, loss, collector, TorchRL trainer ------------------------------
    parts = build_algorithm(validated, device, logger=router, observation_norm=norm, progress_bar=progress_bar)
    trainer = parts.trainer
    ensure_shutdown_on_error(trainer)
    if config.init.policy is not None:
        # A warm start; a restore (which comes after build) replaces these weights with its own.
        load_policy_state(validated, parts, config.init.policy, "init.policy")

    # Hooks, in stage order -----------------------------------------------------------
    router.register(trainer)  # first batch_process op: the iteration starts
    hooks_config = config.hooks
    hooks = logging_hook_set(validated, parts.policy, eval_env)
    hooks.register(trainer)
    policies = PolicyCheckpointHook(
        directory=output_dir / "policies",
        interval=hooks_config.policy_checkpoint.interval,
        policy_path=hooks_config.policy_checkpoint.policy_path or parts.policy_path,
        prefix=hooks_config.policy_checkpoint.prefix,
        meta={
            "experiment": config.name,
            "algo": validated.algo.name,
            "env": config.env.id,
            "seed": config.seed,
            "policy_path": hooks_config.policy_checkpoint.policy_path or parts.policy_path,
        },
    )
    policies.register(trainer)
    # The final policy also when the run's last iteration is not a multiple of the interval.
    trainer.register_op("post_steps", functools.partial(_save_final_policy, trainer, policies))
    if hooks_config.hparams:  # the values in force this iteration, read from the live objects
        trainer.register_op("post_steps_log", functools.partial(log_hparams, trainer, parts, hooks_config.hparams))
    schedule = HyperparameterSchedule(config.schedule, parts)
    schedule.catch_up(0)  # the entries of frame 0 are in force from the first batch
    if config.schedule:  # after the iteration's hparams/* are logged, before the next batch
        trainer.register_op("post_steps_log", functools.partial(schedule, trainer))
    trainer.register_op("post_steps_log", router.end_iteration)  # metrics.jsonl row of the iteration
    if "wandb" in loggers:
        WandbFlushHook().register(trainer)  # ... and its W&B row
    checkpoints = TrainerCheckpointHook(
        output_dir / "checkpoints",
        interval=config.checkpoint.interval,
        keep=config.checkpoint.keep,
        extra_state=parts.extra_state,
        iteration=lambda: router.iteration,
    )
    checkpoints.register(trainer)  # after the metrics: a checkpoint covers only published iterations
    checkpoints.before_save.append(router.sync)  # ... and only iterations durable in metrics.jsonl
    if "wandb" in loggers:
        checkpoints.on_stop.append(functools.partial(mark_wandb_preempting, loggers["wandb"]))
        WandbFinishHook().register(trainer)
    return Experiment(
        validated, output_dir, device, trainer, parts, hooks, router, checkpoints, policies, run_id, schedule
    )


def hparams_in_force(parts: AlgorithmParts, keys: list[str]) -> dict[str, float]:
    """``{"hparams/<key>": value}`` for each of ``keys`` (``algo.*`` live keys), read from the live trainer."""
    return {HPARAMS + key: parts.live[key.removeprefix("algo.")].get() for key in keys}


def log_hparams(trainer: Trainer, parts: AlgorithmParts, keys: list[str], _batch: Any = None) -> None:
    """Log ``hparams/<key>`` for each of ``keys``: the value the live trainer trained with this iteration."""
    for name, value in hparams_in_force(parts, keys).items():
        trainer.logger.log_scalar(name, value, step=trainer.collected_frames)


def _save_final_policy(trainer: Trainer, policies: PolicyCheckpointHook) -> None:
    if (
        policies.interval > 0
        and trainer.collected_frames >= trainer.total_frames
        and policies.num_calls % policies.interval
    ):
        policies.save()


def mark_wandb_preempting(logger: Any, reason: str) -> None:
    """Tell W&B the run stops because its machine is going away (it will be resumed)."""
    if reason == PREEMPTED:
        logger.experiment.mark_preempting()


@dataclasses.dataclass(frozen=True)
class Exploit:
    """A restore that adopts another run's checkpoint (a PBT donor's) while the run keeps its own records.

    Attributes:
        clock: the iteration the run's own records reached; it counts on from there.
        extra: the run's own off-policy state to keep (its replay buffer) instead of the donor's;
            ``None``: the donor's is copied.
        seed: the RNG streams start from here instead of the donor's (members that copy the
            same donor still draw their own episodes and minibatches).
    """

    clock: int
    extra: dict[str, Any] | None = None
    seed: int | None = None


def restore(experiment: Experiment, payload: dict[str, Any] | None, exploit: Exploit | None = None) -> int:
    """Continue an experiment: load a checkpoint payload (``None``: start over), tidy its files, level its records.

    The run directory is made to agree with the restored iteration: temporary
    files of writes a crash cut short are removed, and so are trainer and policy
    checkpoints newer than the restored state. Every metric sink is brought level
    with ``metrics.jsonl`` under the lineage rule (:mod:`xdrl.records.lineage`).
    The config's live hyperparameters are put in force over the loaded ones, and over those
    the values of the config's ``schedule`` at the restored frames.

    With ``exploit``, the payload is a donor's: its learning state (weights, optimizer,
    loss, collector, frames, exploration, replay buffer unless ``exploit.extra``) is
    adopted, but the run's record keeping (iteration count, policy file count, checkpoint
    bookkeeping) stays the run's own at ``exploit.clock``.
    Returns the iteration training continues after.
    """
    iteration = 0
    if payload is not None:
        experiment.trainer.load_state_dict(payload["trainer"])
        own_extra = exploit.extra if exploit is not None else None
        experiment.parts.load_extra_state(payload["extra"] if own_extra is None else own_extra)
        if exploit is not None and exploit.seed is not None:
            seed_everything(exploit.seed)
        else:
            set_rng_state(payload["rng"])
        # The config's hyperparameters, which a resume or a PBT exploit may change, on the live objects
        # (the learning rate's schedule stretched over the run's maybe longer budget).
        apply_hyperparameters(experiment.parts, experiment.validated.algo)
        if experiment.schedule is not None:  # the schedule's values at the restored frames win
            experiment.schedule.catch_up(int(experiment.trainer.collected_frames))
        iteration = int(payload["iteration"])  # the checkpoint hook's own state marks it as saved
        if exploit is not None:
            iteration = exploit.clock
            experiment.router.iteration = iteration
            experiment.hooks.counters_hook.iteration = iteration
            experiment.policies.num_calls = iteration
            experiment.checkpoints.last_saved_iteration = iteration
    output_dir = experiment.output_dir
    removed = remove_partial_writes(output_dir, experiment.checkpoints.directory, experiment.policies.directory)
    removed += remove_interrupted_saves(experiment.checkpoints.directory)
    for path in removed:
        _log.warning("removed %s, left by a write that did not complete", path)
    experiment.checkpoints.discard_after(iteration)
    experiment.policies.discard_after(experiment.policies.num_calls)
    experiment.router.resume(iteration)
    return iteration


def give_member_budget(experiment: Experiment, iterations: int) -> int:
    """A population member's budget: ``iterations`` of its own, wherever its trainer state came from.

    A PBT member that exploits a donor continues from the donor's frames; its budget is
    the iterations its own clock has left (the population's frames are then ``num_samples``
    x ``collector.total_frames``, as for any other search), so the trainer and its collector
    are given the frames those iterations collect. Returns the trainer's new frame budget.
    """
    trainer = experiment.trainer
    remaining = max(iterations - experiment.router.iteration, 0)
    budget = int(trainer.collected_frames) + remaining * experiment.config.collector.frames_per_batch
    trainer.total_frames = budget
    trainer.collector.total_frames = budget
    return budget


def evaluate(experiment: Experiment, episodes: int, *, seed_offset: int = 20_000) -> list[float]:
    """Returns of ``episodes`` deterministic episodes of the trained policy on fresh environments (side by side)."""
    from xdrl.trainer_hooks.evaluation import play_episodes

    config, info = experiment.config, experiment.validated.env_info
    norm = observation_statistics(config.env, info, seed=config.seed) if config.env.normalize_observations else None
    env = make_env(config.env, info, seed=config.seed + seed_offset, num_envs=episodes, observation_norm=norm)
    try:
        played = play_episodes(experiment.parts.policy, env, max_steps=config.hooks.eval.max_steps, deterministic=True)
    finally:
        env.close()
    return [float(value) for value in played.returns(played.rollout["next", "reward"]).reshape(-1)]
