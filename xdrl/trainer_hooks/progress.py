"""Progress of a run (``progress/`` namespace), shown on the trainer's progress bar."""

from __future__ import annotations

import time
from typing import Any

from tensordict import TensorDictBase
from torchrl.trainers.trainers import Trainer, TrainerHookBase


class LoggingProgressHook(TrainerHookBase):
    """Log how far the run is and how fast it goes.

    Stage: ``post_steps_log`` (after optimisation). Metrics:
    ``progress/frames_fraction`` (collected frames over the trainer's
    ``total_frames``) and ``progress/frames_per_second`` (frames of the last
    iteration over its wall time, collection and training included). Both are
    marked for TorchRL's progress bar.
    """

    def __init__(self) -> None:
        self.trainer: Trainer | None = None
        self._last_time: float | None = None
        self._last_frames = 0

    def start(self) -> None:
        """Start the clock (``setup`` stage)."""
        self._last_time = time.perf_counter()
        if self.trainer is not None:
            self._last_frames = self.trainer.collected_frames

    def __call__(self, _batch: TensorDictBase | None = None) -> dict[str, Any]:
        if self.trainer is None:
            raise RuntimeError("LoggingProgressHook must be registered on a trainer before use.")
        now = time.perf_counter()
        frames = self.trainer.collected_frames
        metrics: dict[str, Any] = {
            "progress/frames_fraction": frames / max(self.trainer.total_frames, 1),
        }
        if self._last_time is not None and now > self._last_time:
            metrics["progress/frames_per_second"] = (frames - self._last_frames) / (now - self._last_time)
        self._last_time, self._last_frames = now, frames
        metrics["log_pbar"] = True
        return metrics

    @staticmethod
    def metric_names() -> list[str]:
        """Every key this hook returns."""
        return ["progress/frames_fraction", "progress/frames_per_second"]

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        del state_dict

    def register(self, trainer: Trainer, name: str = "logging_progress") -> None:
        """Register at ``setup`` (clock start) and ``post_steps_log`` under ``name``."""
        self.trainer = trainer
        trainer.register_module(name, self)
        trainer.register_op("setup", self.start)
        trainer.register_op("post_steps_log", self)
