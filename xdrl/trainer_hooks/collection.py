"""Metrics of the data a collector just returned (``collection/`` namespace)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tensordict import TensorDictBase
from torchrl.trainers.trainers import Trainer, TrainerHookBase

from xdrl.trainer_hooks._metrics import flatten_batch, get_key, key_in_group, reward_metric_names, reward_metrics


class LoggingCollectionMetricsHook(TrainerHookBase):
    """Log collection metrics in the ``collection/`` namespace.

    The hook reads reward, done, and optional episode-reward tensors from a
    collected TensorDict. Vector-valued rewards can be scalarized with explicit
    weights, which is useful for MO-Gymnasium and other multi-objective runs.

    Stage: ``pre_steps_log`` (once per collected batch, before optimisation).

    Metrics (``reduce_stats`` decides between ``_min/_mean/_max`` and a plain value):

    - ``collection/reward/reward*``: step rewards, agents averaged;
    - ``collection/<group>/reward/reward*``: step rewards of every agent of the
      group, when ``reward_key`` lives under ``group``;
    - ``collection/reward/episode_reward*`` (and per group): returns of the
      episodes that finished in this batch; absent when none finished;
    - ``collection/reward/objective_<i>/episode_reward*``: per objective, for
      vector rewards;
    - ``collection/done_rate``: fraction of frames that end an episode.

    Frames masked out by the collector (``("collector", "mask")``) are ignored.

    Args:
        group: agent group whose keys are read (``"agents"`` by default).
        reward_key: step reward key; defaults to ``("next", group, "reward")``.
            Single-agent environments pass ``("next", "reward")``.
        done_key: done flag key.
        episode_reward_key: running episode return written by TorchRL's
            ``RewardSum``; defaults to ``("next", group, "episode_reward")``.
        episode_reward_weights: one weight per reward objective; the weighted sum
            is the scalar reward. Required for vector rewards.
        reduce_stats: ``None`` (min/mean/max when there is more than one value),
            ``True`` (always min/mean/max) or ``False`` (always the plain mean).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> batch = TensorDict({"next": {
        ...     "reward": torch.tensor([[1.0], [2.0], [3.0]]),
        ...     "episode_reward": torch.tensor([[1.0], [3.0], [3.0]]),
        ...     "done": torch.tensor([[False], [True], [False]])}}, batch_size=[3])
        >>> hook = LoggingCollectionMetricsHook(
        ...     reward_key=("next", "reward"), episode_reward_key=("next", "episode_reward"))
        >>> metrics = hook(batch)
        >>> metrics["collection/reward/reward_mean"], metrics["collection/reward/episode_reward"]
        (2.0, 3.0)
        >>> round(metrics["collection/done_rate"], 3)
        0.333
    """

    def __init__(
        self,
        group: str = "agents",
        reward_key: tuple[str, ...] | None = None,
        done_key: tuple[str, ...] = ("next", "done"),
        episode_reward_key: tuple[str, ...] | None = None,
        episode_reward_weights: Sequence[float] | None = None,
        reduce_stats: bool | None = None,
    ) -> None:
        self.group = group
        self.reward_key = reward_key
        self.done_key = done_key
        self.episode_reward_key = episode_reward_key
        self.episode_reward_weights = (
            None if episode_reward_weights is None else [float(w) for w in episode_reward_weights]
        )
        self.reduce_stats = reduce_stats

    @property
    def _reward_key(self) -> tuple[str, ...]:
        return self.reward_key if self.reward_key is not None else ("next", self.group, "reward")

    @property
    def _episode_reward_key(self) -> tuple[str, ...]:
        if self.episode_reward_key is not None:
            return self.episode_reward_key
        return ("next", self.group, "episode_reward")

    def __call__(self, batch: TensorDictBase) -> dict[str, float]:
        owner = type(self).__name__
        hint = "Single-agent environments pass reward_key=('next', 'reward')."
        reward_key = self._reward_key
        group = self.group if key_in_group(reward_key, self.group) else None
        common = {
            "group": group,
            "weights": self.episode_reward_weights,
            "reduce_stats": self.reduce_stats,
            "owner": owner,
        }
        reward = flatten_batch(batch, get_key(batch, reward_key, owner, hint))
        metrics = reward_metrics("collection", "reward", reward, **common)

        done = flatten_batch(batch, get_key(batch, self.done_key, owner))
        done = done.reshape(done.shape[0], -1).any(-1)
        if done.numel():
            metrics["collection/done_rate"] = done.float().mean().item()
        if bool(done.any()):
            episode_key = self._episode_reward_key
            hint = "Add TorchRL's RewardSum transform to the environment or pass episode_reward_key."
            episode_reward = flatten_batch(batch, get_key(batch, episode_key, owner, hint))
            metrics.update(reward_metrics("collection", "episode_reward", episode_reward[done], **common))
        return metrics

    def metric_names(self, objectives: int = 1) -> list[str]:
        """Every key this hook may return, for a reward with ``objectives`` objectives."""
        group = self.group if key_in_group(self._reward_key, self.group) else None
        names = ["collection/done_rate"]
        for name in ("reward", "episode_reward"):
            names += reward_metric_names(
                "collection", name, group=group, objectives=objectives, scalar=True, reduce_stats=self.reduce_stats
            )
        return names

    def state_dict(self) -> dict[str, Any]:
        # Stateless: every batch is summarised on its own.
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        del state_dict

    def register(self, trainer: Trainer, name: str = "logging_collection_metrics") -> None:
        """Registers the hook in the trainer at a default location.

        Args:
            trainer (Trainer): the trainer where the hook must be registered.
            name (str): the name of the hook.

        Note:
            To register the hook at another location than the default, use
            ``register_op()``.
        """
        trainer.register_module(name, self)
        trainer.register_op("pre_steps_log", self)
