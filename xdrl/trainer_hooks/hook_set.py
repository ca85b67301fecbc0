"""The default xdrl logging hooks, registered on a trainer with one call."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from tensordict import TensorDictBase
from torchrl.trainers.trainers import Trainer, TrainerHookBase

from xdrl.trainer_hooks.collection import LoggingCollectionMetricsHook
from xdrl.trainer_hooks.counters import LoggingCountersHook
from xdrl.trainer_hooks.evaluation import LoggingEvaluationHookSet
from xdrl.trainer_hooks.progress import LoggingProgressHook
from xdrl.trainer_hooks.training import LoggingTrainingMetricsHook


class LoggingHookSet(TrainerHookBase):
    """Compose the default ``xdrl`` logging hooks.

    The hook set registers collection metrics, training metrics, counters,
    progress metrics, timers, and optional evaluation hooks as a single object.
    This keeps Hydra configs concise while preserving independently testable
    hook components.

    Stages, in the order TorchRL runs them within one iteration:

    - ``setup``: start the clocks;
    - ``batch_process``: ``_timers_start`` (end of collection);
    - ``pre_steps_log``: :attr:`collection_hook`, :attr:`counters_hook`;
    - ``post_optim_complete_log``: :attr:`training_hook`;
    - ``post_steps_log``: :attr:`eval_hook_set`, ``_timers_end``, :attr:`progress_hook`;
    - ``shutdown``: close the evaluation environment.

    :meth:`close` closes the evaluation hook set (if any) on demand, e.g. for a
    trainer that never reaches its ``shutdown`` stage; it may run any number of
    times, before or after that stage.

    Timer metrics: ``timers/collection_time`` (previous iteration end to batch
    arrival), ``timers/training_time`` (batch arrival to iteration end, i.e.
    optimisation, post-step hooks and evaluation), ``timers/iteration_time``
    (their sum) and ``timers/total_time`` (running sum, restored from
    checkpoints). The whole set is one module of the trainer's ``state_dict``.

    Args:
        group: agent group used in metric names and default keys.
        frame_skip: environment frames per collected frame.
        reward_key, done_key, episode_reward_key, episode_reward_weights,
            reduce_stats: passed to :class:`LoggingCollectionMetricsHook`.
        eval_hook_set: optional evaluation variants run on their own schedule.

    Examples:
        >>> hooks = LoggingHookSet(group="agents", frame_skip=1, reward_key=("next", "reward"),
        ...                        episode_reward_key=("next", "episode_reward"))
        >>> sorted(hooks.state_dict())
        ['collection', 'counters', 'evaluation', 'progress', 'timers', 'training']
        >>> hooks.close()  # no evaluation hook set: nothing to close
    """

    def __init__(
        self,
        *,
        group: str,
        frame_skip: int,
        reward_key: tuple[str, ...] | None = None,
        done_key: tuple[str, ...] = ("next", "done"),
        episode_reward_key: tuple[str, ...] | None = None,
        episode_reward_weights: Sequence[float] | None = None,
        reduce_stats: bool | None = None,
        eval_hook_set: LoggingEvaluationHookSet | None = None,
    ) -> None:
        self.group = group
        self.collection_hook = LoggingCollectionMetricsHook(
            group=group,
            reward_key=reward_key,
            done_key=done_key,
            episode_reward_key=episode_reward_key,
            episode_reward_weights=episode_reward_weights,
            reduce_stats=reduce_stats,
        )
        self.training_hook = LoggingTrainingMetricsHook(group=group)
        self.counters_hook = LoggingCountersHook(frame_skip=frame_skip)
        self.progress_hook = LoggingProgressHook()
        self.eval_hook_set = eval_hook_set
        self._iteration_start: float | None = None
        self._previous_iteration_end: float | None = None
        self._collection_time = 0.0
        self._total_time = 0.0

    def _timers_setup(self) -> None:
        self._previous_iteration_end = time.perf_counter()

    def _timers_start(self, batch: TensorDictBase) -> TensorDictBase:
        now = time.perf_counter()
        if self._previous_iteration_end is None:
            self._previous_iteration_end = now
        self._iteration_start = now
        self._collection_time = now - self._previous_iteration_end
        return batch

    def _timers_end(self, _batch: TensorDictBase | None) -> dict[str, float]:
        now = time.perf_counter()
        if self._iteration_start is None:
            return {}
        training_time = now - self._iteration_start
        iteration_time = self._collection_time + training_time
        self._total_time += iteration_time
        self._previous_iteration_end = now
        return {
            "timers/collection_time": self._collection_time,
            "timers/training_time": training_time,
            "timers/iteration_time": iteration_time,
            "timers/total_time": self._total_time,
        }

    def metric_names(self, loss_keys: list[str], objectives: int = 1, eval_objectives: int = 1) -> list[str]:
        """Every metric key the set may produce: its metric schema, known before training.

        Args:
            loss_keys: keys of the averaged loss TensorDict the trainer passes on.
            objectives: objectives of the reward the collection hook reads.
            eval_objectives: objectives of the reward the evaluation hooks read.
        """
        names = self.collection_hook.metric_names(objectives)
        names += self.counters_hook.metric_names()
        names += self.training_hook.metric_names(loss_keys)
        if self.eval_hook_set is not None:
            names += self.eval_hook_set.metric_names(eval_objectives)
        names += ["timers/collection_time", "timers/training_time", "timers/iteration_time", "timers/total_time"]
        return names + self.progress_hook.metric_names()

    def close(self) -> None:
        """Close the evaluation hook set, if any; harmless when it is closed already."""
        if self.eval_hook_set is not None:
            self.eval_hook_set.close()

    def state_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection_hook.state_dict(),
            "training": self.training_hook.state_dict(),
            "counters": self.counters_hook.state_dict(),
            "progress": self.progress_hook.state_dict(),
            "timers": {"total_time": self._total_time},
            "evaluation": None if self.eval_hook_set is None else self.eval_hook_set.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.collection_hook.load_state_dict(state_dict["collection"])
        self.training_hook.load_state_dict(state_dict["training"])
        self.counters_hook.load_state_dict(state_dict["counters"])
        self.progress_hook.load_state_dict(state_dict["progress"])
        self._total_time = float(state_dict["timers"]["total_time"])
        if self.eval_hook_set is not None and state_dict.get("evaluation") is not None:
            self.eval_hook_set.load_state_dict(state_dict["evaluation"])

    def register(self, trainer: Trainer, name: str = "logging_hooks") -> None:
        """Register at this hook's stages (see the class docstring) as trainer module ``name``."""
        trainer.register_module(name, self)
        self.progress_hook.trainer = trainer
        trainer.register_op("setup", self._timers_setup)
        trainer.register_op("setup", self.progress_hook.start)
        trainer.register_op("batch_process", self._timers_start)
        trainer.register_op("pre_steps_log", self.collection_hook)
        trainer.register_op("pre_steps_log", self.counters_hook)
        trainer.register_op("post_optim_complete_log", self.training_hook)
        if self.eval_hook_set is not None:
            self.eval_hook_set.attach(trainer)
            trainer.register_op("post_steps_log", self.eval_hook_set)
            trainer.register_op("shutdown", self.eval_hook_set.close)
        trainer.register_op("post_steps_log", self._timers_end)
        trainer.register_op("post_steps_log", self.progress_hook)
