"""Metrics of the data a collector just returned (``collection/`` namespace)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.trainers.trainers import Trainer, TrainerHookBase

from xdrl.trainer_hooks._metrics import (
    flatten_batch,
    get_key,
    get_reward,
    key_in_group,
    reward_metric_names,
    reward_metrics,
)

_log = logging.getLogger(__name__)


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
    - ``collection/reward/objective_<i>/episode_reward*`` (and ``.../reward*``):
      per objective, for vector rewards;
    - ``collection/done_rate``: fraction of frames that end an episode.

    The step reward and the done flag must be in the batch (a missing one raises
    a ``KeyError`` that lists the keys there are). The episode reward is
    optional: when ``episode_reward_key`` is absent the step-reward and done
    metrics are still logged and the episode metrics are skipped.

    ``episode_reward_weights`` scalarize vector rewards. A reward that is
    already scalar (last dimension 1, or no objective dimension at all) is logged
    as it is whatever the weights, so a multi-objective run can log its
    scalarized step reward next to the weighted vector episode return; a vector
    reward whose size differs from the number of weights raises a ``ValueError``.

    Frames masked out by the collector (``("collector", "mask")``) are ignored.

    Args:
        group: agent group whose keys are read (``"agents"`` by default).
        reward_key: step reward key; defaults to ``("next", group, "reward")``.
            Single-agent environments pass ``("next", "reward")``.
        done_key: done flag key.
        episode_reward_key: running episode return written by TorchRL's
            ``RewardSum``; defaults to ``("next", group, "episode_reward")``.
            Optional in the batch.
        episode_reward_weights: one weight per reward objective; the weighted sum
            is the scalar reward of a vector reward (without weights a vector
            reward only gets its per-objective metrics). Scalar rewards ignore them.
        reduce_stats: ``None`` (min/mean/max when there is more than one value),
            ``True`` (always min/mean/max) or ``False`` (always the plain mean).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> batch = TensorDict({"next": {
        ...     "reward": torch.tensor([[1.0], [2.0], [3.0]]),
        ...     "episode_reward": torch.tensor([[1.0, 0.0], [3.0, -2.0], [3.0, -1.0]]),
        ...     "done": torch.tensor([[False], [True], [False]])}}, batch_size=[3])
        >>> hook = LoggingCollectionMetricsHook(
        ...     reward_key=("next", "reward"), episode_reward_key=("next", "episode_reward"),
        ...     episode_reward_weights=[1.0, 0.5])
        >>> metrics = hook(batch)
        >>> metrics["collection/reward/reward_mean"], metrics["collection/reward/episode_reward"]
        (2.0, 2.0)
        >>> round(metrics["collection/done_rate"], 3)
        0.333

        Without an episode reward in the batch, the episode metrics are skipped:

        >>> del batch["next", "episode_reward"]
        >>> sorted(hook(batch))
        ['collection/done_rate', 'collection/reward/reward_max', 'collection/reward/reward_mean', 'collection/reward/reward_min']
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
        self._reported_missing_episode_reward = False

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
        reward_key = self._reward_key
        group = self.group if key_in_group(reward_key, self.group) else None
        common = {
            "group": group,
            "weights": self.episode_reward_weights,
            "reduce_stats": self.reduce_stats,
            "owner": owner,
        }
        hint = "Single-agent environments pass reward_key=('next', 'reward')."
        reward = get_reward(batch, reward_key, owner, hint)
        metrics = reward_metrics("collection", "reward", reward, key=reward_key, **common)

        done = flatten_batch(batch, get_key(batch, self.done_key, owner))
        done = done.reshape(done.shape[0], -1).any(-1)
        if done.numel():
            metrics["collection/done_rate"] = done.float().mean().item()
        if bool(done.any()):
            metrics.update(self._episode_metrics(batch, done, common))
        return metrics

    def _episode_metrics(self, batch: TensorDictBase, done: torch.Tensor, common: dict[str, Any]) -> dict[str, float]:
        episode_key = self._episode_reward_key
        if batch.get(episode_key, None) is None:
            # The spec makes the episode return optional (no RewardSum, or a custom
            # env); say so once, as a missing metric is otherwise easy to overlook.
            if not self._reported_missing_episode_reward:
                self._reported_missing_episode_reward = True
                _log.info(
                    "%s: episode_reward_key %s is not in the batch; episode metrics are skipped "
                    "(add TorchRL's RewardSum transform to the environment to get them).",
                    common["owner"],
                    episode_key,
                )
            return {}
        episode_reward = get_reward(batch, episode_key, common["owner"])
        return reward_metrics("collection", "episode_reward", episode_reward[done], key=episode_key, **common)

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
        """Register at this hook's stages (see the class docstring) as trainer module ``name``."""
        trainer.register_module(name, self)
        trainer.register_op("pre_steps_log", self)
