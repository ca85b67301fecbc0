"""Periodic evaluation rollouts (``eval/<subgroup>/`` namespace)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.trainers.trainers import Trainer, TrainerHookBase

from xdrl.trainer_hooks._metrics import get_key, key_in_group, reward_metric_names, reward_metrics, stat_names, stats


def close_environment(environment: Any, *, closed_before: bool = False) -> bool:
    """Close ``environment`` unless it is closed already; return whether it is known closed.

    TorchRL environments keep an ``is_closed`` flag, which decides: a batched
    environment raises when closed twice, counts as closed before it starts,
    and starts again on its next use after a close. An environment without the
    flag is closed unless ``closed_before`` (the caller's own record) says an
    earlier call did it.

    Args:
        environment: the environment (``None`` and objects without ``close`` are left alone).
        closed_before: whether the caller closed this environment before.

    Returns:
        The caller's new record: ``True`` once the environment was closed.
    """
    if environment is None or not callable(getattr(environment, "close", None)):
        return closed_before
    is_closed = getattr(environment, "is_closed", None)
    if is_closed is None and closed_before:
        return True
    if is_closed:
        return True
    environment.close()
    return True


def _first_episode_mask(done: torch.Tensor) -> torch.Tensor:
    """Steps of a rollout ``(..., T)`` that belong to each environment's first episode."""
    done = done.to(torch.int64)
    return (done.cumsum(-1) - done) == 0


@dataclasses.dataclass
class Episodes:
    """What :func:`play_episodes` played: one episode per environment of the batch."""

    #: The rollout, ``(*env_batch, T)``; steps after an environment's first episode repeat its last step.
    rollout: TensorDictBase
    #: ``(*env_batch, T)``: the steps that belong to each environment's first episode.
    valid: torch.Tensor
    #: Rendered frames of the first environment's episode, one per step (``render=True``).
    frames: list[np.ndarray]
    #: Wall time of the rollout, seconds.
    elapsed: float

    @property
    def lengths(self) -> torch.Tensor:
        """Steps of each episode, flat over the env batch."""
        return self.valid.sum(-1).reshape(-1)

    def returns(self, reward: torch.Tensor) -> torch.Tensor:
        """Each episode's sum of ``reward`` (a rollout entry ``(*env_batch, T, *r)``), as ``(episodes, *r)``."""
        weights = self.valid.reshape(*self.valid.shape, *([1] * (reward.ndim - self.valid.ndim))).to(reward.dtype)
        time_dim = self.rollout.ndim - 1
        return (reward * weights).sum(time_dim).reshape(-1, *reward.shape[self.rollout.ndim :])


def _render_frame(environment: Any, render_kwargs: dict[str, Any], owner: str) -> np.ndarray:
    frame = environment.render(**render_kwargs)
    if isinstance(frame, list | tuple):  # a batched environment renders each of its environments
        frame = frame[0] if frame else None
    if frame is None:
        raise RuntimeError(
            f"{owner}: environment.render() returned None; create the "
            "environment with render_mode='rgb_array' or set render=False."
        )
    return np.asarray(frame)


def play_episodes(
    policy: Any,
    environment: Any,
    *,
    max_steps: int,
    deterministic: bool,
    render: bool = False,
    render_kwargs: dict[str, Any] | None = None,
    seed: int | None = None,
    owner: str = "play_episodes",
) -> Episodes:
    """Play one episode in each environment of ``environment`` (a single env: one episode).

    A batched environment (``batch_size`` not empty) steps all its environments
    together; each one stops when its first episode ends (TorchRL's partial steps,
    ``break_when_all_done``), and the rollout ends when all have ended or after
    ``max_steps`` steps (an episode cut there counts with the steps it had).

    Args:
        policy: the acting policy (put in eval mode for the rollout, then restored).
        environment: a TorchRL environment.
        max_steps: the most steps of an episode.
        deterministic: deterministic exploration (the distribution's mode) or random.
        render: render every step through ``environment.render`` (first environment of a batch).
        render_kwargs: keyword arguments of ``render``.
        seed: seed the environment and torch's generator (forked, so the caller's stream is
            untouched) first; ``None``: both run on.
        owner: the name errors carry.
    """
    render_kwargs = dict(render_kwargs or {})
    frames: list[np.ndarray] = []
    callback = (lambda env, _td: frames.append(_render_frame(env, render_kwargs, owner))) if render else None
    exploration = ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM
    was_training = policy.training if isinstance(policy, torch.nn.Module) else None
    batched = len(environment.batch_size) > 0
    start = time.perf_counter()
    try:
        if was_training is not None:
            policy.eval()
        with torch.no_grad(), set_exploration_type(exploration), torch.random.fork_rng(enabled=seed is not None):
            if seed is not None:
                environment.set_seed(seed)
                torch.manual_seed(seed)
            rollout = environment.rollout(
                max_steps=max_steps,
                policy=policy,
                callback=callback,
                auto_cast_to_device=True,
                break_when_any_done=not batched,
                break_when_all_done=batched,
            )
        if render:
            # rollout() calls back after every step but the last one.
            frames.append(_render_frame(environment, render_kwargs, owner))
    finally:
        if was_training:
            policy.train()
    elapsed = time.perf_counter() - start
    done = get_key(rollout, ("next", "done"), owner)
    # (*env_batch, T): first-episode steps of every environment.
    valid = _first_episode_mask(done.reshape(*rollout.batch_size, -1).any(-1))
    if render:
        frames = frames[: int(valid.reshape(-1, valid.shape[-1])[0].sum())]
    return Episodes(rollout=rollout, valid=valid, frames=frames, elapsed=elapsed)


class LoggingEvaluationMetricsHook(TrainerHookBase):
    """Run periodic evaluation and log metrics under ``eval/<subgroup>/``.

    Stage: ``post_steps_log``. Whenever the trainer's collected frames cross a
    multiple of ``interval_frames``, the hook runs one rollout of at most
    ``max_steps`` steps with deterministic (``deterministic=True``) or random
    exploration (see :func:`play_episodes`: a batched environment plays one
    episode per environment, side by side, until each has ended) and returns:

    - ``eval/<subgroup>/reward/episode_reward*``: return of each environment's
      first episode (agents averaged), and per group when ``reward_key`` lives
      under ``group``; per objective (``objective_<i>``) for vector rewards;
    - ``eval/<subgroup>/episode_length*``: steps of that episode;
    - ``timers/eval/<subgroup>/evaluation_time``: wall time of the rollout.

    With ``render=True`` every step is rendered through ``environment.render``
    and the frames are logged as one video ``eval/<subgroup>/video`` through the
    trainer's logger (or ``logger`` before registration) at ``video_fps``. A
    render that fails or returns ``None`` raises: a missing video is an error.
    A batched environment's video shows its first environment's episode.

    With ``seed``, every evaluation starts from the same state: the environment
    is seeded with it and torch's random numbers (random exploration) come from
    a generator seeded with it, leaving the trainer's own random streams as they
    were. Evaluations then differ only by the policy, also across a restore.

    :meth:`close` (also run at the trainer's ``shutdown`` stage) closes the
    environment. It may run any number of times: once the environment is closed
    (by this hook or by anyone else, as its ``is_closed`` flag tells; an
    environment without the flag: by this hook), further calls do nothing.

    Args:
        policy: Policy module used during rollout.
        environment: TorchRL environment with a ``rollout`` method.
        group: Agent/group namespace used for reward keys.
        metric_subgroup: Evaluation label such as ``"deterministic"``.
        interval_frames: Collected-frame interval between evaluations
            (non-positive: never).
        max_steps: Maximum rollout length.
        deterministic: Whether to force deterministic exploration.
        render: Whether to capture rendered frames and log a video.
        video_fps: Video frame rate passed to the logger.
        render_kwargs: Optional keyword arguments passed to environment ``render``.
        reward_key: TensorDict key for rollout rewards; defaults to
            ``("next", group, "reward")``.
        reduce_stats: Whether vector metrics are reduced to min/mean/max
            (see :class:`LoggingCollectionMetricsHook`).
        logger: Optional logger used before the hook is registered on a trainer.
        seed: Optional seed applied before every evaluation (``None``: the
            environment and torch's generator run on from where they are).

    Examples:
        >>> from torchrl.envs import GymEnv
        >>> env = GymEnv("CartPole-v1")
        >>> hook = LoggingEvaluationMetricsHook(
        ...     policy=None, environment=env, group="agents", metric_subgroup="random",
        ...     interval_frames=1, max_steps=5, deterministic=False, render=False,
        ...     video_fps=30, reward_key=("next", "reward"))
        >>> metrics = hook.evaluate(step=0)
        >>> metrics["eval/random/episode_length"] <= 5
        True
        >>> hook.close(); hook.close()
        >>> env.is_closed
        True
    """

    def __init__(
        self,
        *,
        policy: torch.nn.Module,
        environment: Any,
        group: str,
        metric_subgroup: str,
        interval_frames: int,
        max_steps: int,
        deterministic: bool,
        render: bool,
        video_fps: int,
        render_kwargs: dict[str, Any] | None = None,
        reward_key: tuple[str, ...] | None = None,
        reduce_stats: bool | None = None,
        logger: Any | None = None,
        seed: int | None = None,
    ) -> None:
        self.policy = policy
        self.seed = seed
        self.environment = environment
        self.group = group
        self.reward_key = reward_key
        self.reduce_stats = reduce_stats
        self.metric_subgroup = metric_subgroup
        self.interval_frames = interval_frames
        self.max_steps = max_steps
        self.deterministic = deterministic
        self.render = render
        self.render_kwargs = dict(render_kwargs or {})
        self.video_fps = video_fps
        self.logger = logger
        self.trainer: Trainer | None = None
        # Evaluations done so far, i.e. the last multiple of interval_frames reached.
        self._evaluations = 0
        # Frames seen when called without a trainer (standalone use).
        self._standalone_frames = 0
        # Whether close() closed the environment: the record for environments without is_closed.
        self._closed_environment = False

    @property
    def _reward_key(self) -> tuple[str, ...]:
        return self.reward_key if self.reward_key is not None else ("next", self.group, "reward")

    def _active_logger(self) -> Any | None:
        if self.trainer is not None and self.trainer.logger is not None:
            return self.trainer.logger
        return self.logger

    def _log_direct(self, metrics: dict[str, float], step: int) -> None:
        """Log ``metrics`` through :attr:`logger` when no trainer forwards them."""
        if self.logger is None:
            return
        for name, value in metrics.items():
            self.logger.log_scalar(name, value, step=step)

    def due(self, frames: int) -> bool:
        """Whether ``frames`` collected frames call for a new evaluation."""
        return self.interval_frames > 0 and frames // self.interval_frames > self._evaluations

    def __call__(self, _batch: TensorDictBase | None) -> dict[str, float]:
        if self.trainer is not None:
            frames = self.trainer.collected_frames
        else:
            self._standalone_frames += _batch.numel() if _batch is not None else 0
            frames = self._standalone_frames
        if not self.due(frames):
            return {}
        self._evaluations = frames // self.interval_frames
        metrics = self.evaluate(step=frames)
        if self.trainer is None:
            self._log_direct(metrics, frames)
        return metrics

    def evaluate(self, step: int) -> dict[str, float]:
        """Run one evaluation now and return its metrics.

        Args:
            step: collected frames, used as the step of the video.
        """
        prefix = f"eval/{self.metric_subgroup}"
        episodes = play_episodes(
            self.policy,
            self.environment,
            max_steps=self.max_steps,
            deterministic=self.deterministic,
            render=self.render,
            render_kwargs=self.render_kwargs,
            seed=self.seed,
            owner=type(self).__name__,
        )
        owner = type(self).__name__
        reward_key = self._reward_key
        reward = get_key(
            episodes.rollout, reward_key, owner, "Single-agent environments pass reward_key=('next', 'reward')."
        )
        metrics = reward_metrics(
            prefix,
            "episode_reward",
            episodes.returns(reward),
            group=self.group if key_in_group(reward_key, self.group) else None,
            weights=None,
            reduce_stats=self.reduce_stats,
            owner=owner,
        )
        metrics.update(stats(f"{prefix}/episode_length", episodes.lengths.float(), self.reduce_stats))
        metrics[f"timers/{prefix}/evaluation_time"] = episodes.elapsed
        if self.render:
            self._log_video(f"{prefix}/video", episodes.frames, step)
        return metrics

    def metric_names(self, objectives: int = 1) -> list[str]:
        """Every key :meth:`evaluate` may return, for a reward with ``objectives`` objectives."""
        prefix = f"eval/{self.metric_subgroup}"
        group = self.group if key_in_group(self._reward_key, self.group) else None
        names = reward_metric_names(
            prefix,
            "episode_reward",
            group=group,
            objectives=objectives,
            scalar=objectives == 1,
            reduce_stats=self.reduce_stats,
        )
        return names + stat_names(f"{prefix}/episode_length", self.reduce_stats) + [f"timers/{prefix}/evaluation_time"]

    def _log_video(self, name: str, frames: list[np.ndarray], step: int) -> None:
        logger = self._active_logger()
        if logger is None:
            raise RuntimeError(f"{type(self).__name__}: render=True needs a logger (the trainer's or `logger=`).")
        if not frames:
            raise RuntimeError(f"{type(self).__name__}: render=True but the rollout produced no frame.")
        video = torch.as_tensor(np.stack(frames))  # (T, H, W, C)
        if video.ndim == 3:
            video = video.unsqueeze(-1)
        video = video.permute(0, 3, 1, 2).unsqueeze(0).contiguous()  # (1, T, C, H, W)
        logger.log_video(name, video, step=step, fps=self.video_fps)

    def close(self) -> None:
        """Close the evaluation environment (``shutdown`` stage); harmless when it is closed already."""
        self._closed_environment = close_environment(self.environment, closed_before=self._closed_environment)

    def state_dict(self) -> dict[str, Any]:
        return {"evaluations": self._evaluations}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._evaluations = int(state_dict["evaluations"])

    def register(self, trainer: Trainer, name: str = "logging_evaluation_metrics") -> None:
        """Register at this hook's stages (see the class docstring) as trainer module ``name``."""
        self.trainer = trainer
        trainer.register_module(name, self)
        trainer.register_op("post_steps_log", self)
        trainer.register_op("shutdown", self.close)


class LoggingEvaluationHookSet:
    """Compose deterministic and non-deterministic evaluation hooks.

    This wrapper is useful when the same environment and policy should be
    evaluated with both exploration settings on the same schedule. The variants
    log under ``eval/deterministic/`` and ``eval/non_deterministic/``; they are
    registered, run and closed together (one module in the trainer checkpoint).

    :meth:`close` (also run at the trainer's ``shutdown`` stage) closes the
    environment once, even when no variant is enabled; calling it again, or
    after a variant closed the environment, does nothing.

    Args: see :class:`LoggingEvaluationMetricsHook`; ``deterministic`` and
    ``non_deterministic`` choose which variants exist.

    Examples:
        >>> from torchrl.envs import GymEnv
        >>> hooks = LoggingEvaluationHookSet(
        ...     policy=None, environment=GymEnv("CartPole-v1"), group="agents",
        ...     interval_frames=100, max_steps=10, deterministic=False,
        ...     non_deterministic=True, render=False, video_fps=30,
        ...     reward_key=("next", "reward"))
        >>> [hook.metric_subgroup for hook in hooks.hooks]
        ['non_deterministic']
        >>> hooks.close(); hooks.close()
        >>> hooks.environment.is_closed
        True
    """

    def __init__(
        self,
        *,
        policy: torch.nn.Module,
        environment: Any,
        group: str,
        interval_frames: int,
        max_steps: int,
        deterministic: bool,
        non_deterministic: bool,
        render: bool,
        video_fps: int,
        render_kwargs: dict[str, Any] | None = None,
        reward_key: tuple[str, ...] | None = None,
        reduce_stats: bool | None = None,
        logger: Any | None = None,
        seed: int | None = None,
    ) -> None:
        self.environment = environment
        variants = [("deterministic", True)] * deterministic + [("non_deterministic", False)] * non_deterministic
        self.hooks: list[LoggingEvaluationMetricsHook] = [
            LoggingEvaluationMetricsHook(
                policy=policy,
                environment=environment,
                group=group,
                metric_subgroup=subgroup,
                interval_frames=interval_frames,
                max_steps=max_steps,
                deterministic=is_deterministic,
                render=render,
                video_fps=video_fps,
                render_kwargs=render_kwargs,
                reward_key=reward_key,
                reduce_stats=reduce_stats,
                logger=logger,
                seed=seed,
            )
            for subgroup, is_deterministic in variants
        ]
        self._closed_environment = False

    def __call__(self, batch: TensorDictBase | None) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for hook in self.hooks:
            metrics.update(hook(batch))
        return metrics

    def metric_names(self, objectives: int = 1) -> list[str]:
        """Every key the variants may return."""
        return [name for hook in self.hooks for name in hook.metric_names(objectives)]

    def attach(self, trainer: Trainer) -> None:
        """Let every variant read the trainer's frames and logger (no registration)."""
        for hook in self.hooks:
            hook.trainer = trainer

    def close(self) -> None:
        """Close the evaluation environment once (``shutdown`` stage); harmless when it is closed already."""
        closed: list[Any] = []
        for hook in self.hooks:
            if any(hook.environment is other for other in closed):
                # Shared with a variant closed just now: one without is_closed must not close twice.
                hook._closed_environment = True
                continue
            hook.close()
            closed.append(hook.environment)
        # Also with no variant enabled: the environment was handed over all the same.
        if not any(self.environment is other for other in closed):
            self._closed_environment = close_environment(self.environment, closed_before=self._closed_environment)

    def state_dict(self) -> dict[str, Any]:
        return {hook.metric_subgroup: hook.state_dict() for hook in self.hooks}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for hook in self.hooks:
            hook.load_state_dict(state_dict[hook.metric_subgroup])

    def register(self, trainer: Trainer, name: str = "logging_evaluation_hooks") -> None:
        """Register all variants at ``post_steps_log`` and close them at ``shutdown``."""
        self.attach(trainer)
        trainer.register_module(name, self)
        trainer.register_op("post_steps_log", self)
        trainer.register_op("shutdown", self.close)
