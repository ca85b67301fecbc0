"""Frame and iteration counters (``counters/`` namespace)."""

from __future__ import annotations

from typing import Any

from tensordict import TensorDictBase
from torchrl.trainers.trainers import Trainer, TrainerHookBase

from xdrl.trainer_hooks._metrics import COLLECTOR_MASK_KEY


def count_frames(batch: TensorDictBase, frame_skip: int) -> int:
    """Frames in a collected batch, the way TorchRL's ``Trainer`` counts them."""
    mask = batch.get(COLLECTOR_MASK_KEY, None)
    valid = int(mask.sum().item()) if mask is not None else batch.numel()
    return valid * frame_skip


class LoggingCountersHook(TrainerHookBase):
    """Track frame and iteration counters in the ``counters/`` namespace.

    Stage: ``pre_steps_log``. Each call counts the frames of the batch (masked
    frames excluded, multiplied by ``frame_skip``) exactly as TorchRL's trainer
    does, so ``counters/total_frames`` equals ``trainer.collected_frames``.

    Metrics: ``counters/current_frames``, ``counters/total_frames``,
    ``counters/iter`` (1 for the first batch). The totals are part of
    ``state_dict`` so a resumed trainer keeps counting.

    Args:
        frame_skip: environment frames per collected frame.

    Examples:
        >>> from tensordict import TensorDict
        >>> hook = LoggingCountersHook(frame_skip=2)
        >>> hook(TensorDict(batch_size=[8]))
        {'counters/current_frames': 16, 'counters/total_frames': 16, 'counters/iter': 1}
        >>> hook(TensorDict(batch_size=[8]))["counters/total_frames"]
        32
    """

    def __init__(self, frame_skip: int = 1) -> None:
        self.frame_skip = frame_skip
        self.total_frames = 0
        self.iteration = 0

    def __call__(self, batch: TensorDictBase) -> dict[str, int]:
        current = count_frames(batch, self.frame_skip)
        self.total_frames += current
        self.iteration += 1
        return {
            "counters/current_frames": current,
            "counters/total_frames": self.total_frames,
            "counters/iter": self.iteration,
        }

    @staticmethod
    def metric_names() -> list[str]:
        """Every key this hook returns."""
        return ["counters/current_frames", "counters/total_frames", "counters/iter"]

    def state_dict(self) -> dict[str, Any]:
        return {"total_frames": self.total_frames, "iteration": self.iteration}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.total_frames = int(state_dict["total_frames"])
        self.iteration = int(state_dict["iteration"])

    def register(self, trainer: Trainer, name: str = "logging_counters") -> None:
        """Register at this hook's stages (see the class docstring) as trainer module ``name``."""
        trainer.register_module(name, self)
        trainer.register_op("pre_steps_log", self)
