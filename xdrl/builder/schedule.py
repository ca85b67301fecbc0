"""``schedule``: hyperparameter values put in force on the live trainer at given frame counts.

A schedule entry ``{frames: F, values: {algo.lr: 0.001}}`` applies from the first iteration
whose batch starts at or after ``F`` frames: the values are set at the end of the iteration
that brings the collected frames to ``F`` or beyond (before the collector gathers the next
batch), which is what a PBT member experiences when it exploits a donor's checkpoint of ``F``
frames. The values in force are a function of the frames alone, so a restore (``--resume``,
a retried trial) puts back the schedule's values at the restored frames over the config's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torchrl.trainers import Trainer

from xdrl.builder.algorithms.common import AlgorithmParts


def values_at(schedule: Sequence[Any], frames: int) -> dict[str, Any]:
    """The scheduled values in force once ``frames`` frames are collected (later entries win).

    Examples:
        >>> from xdrl.config.schema import ScheduleEntry
        >>> steps = [ScheduleEntry(0, {"algo.lr": 1e-3}), ScheduleEntry(128, {"algo.lr": 2e-3, "algo.gamma": 0.9})]
        >>> values_at(steps, 0), values_at(steps, 127), values_at(steps, 128)
        ({'algo.lr': 0.001}, {'algo.lr': 0.001}, {'algo.lr': 0.002, 'algo.gamma': 0.9})
    """
    merged: dict[str, Any] = {}
    for entry in schedule:
        if entry.frames <= frames:
            merged.update(entry.values)
    return merged


class HyperparameterSchedule:
    """The ``schedule`` of a built experiment, applied through :attr:`AlgorithmParts.live`.

    Stage: ``post_steps_log``, after the ``hparams/*`` of the iteration are logged (the row
    says what the iteration trained with) and before the collector's next batch. The
    builder calls :meth:`catch_up` at frames 0, and :func:`xdrl.builder.experiment.restore`
    at the restored frames, after it put the config's values in force.

    Args:
        schedule: the validated ``schedule`` entries (ascending frames).
        parts: the built algorithm whose live values it sets.
    """

    def __init__(self, schedule: Sequence[Any], parts: AlgorithmParts) -> None:
        self.schedule = list(schedule)
        self.parts = parts
        #: Entries applied so far (the next one is ``schedule[applied]``).
        self.applied = 0

    def _set(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self.parts.live[key.removeprefix("algo.")].set(value)

    def catch_up(self, frames: int) -> dict[str, Any]:
        """Put in force every value the schedule holds at ``frames``; returns them."""
        values = values_at(self.schedule, frames)
        self._set(values)
        self.applied = sum(1 for entry in self.schedule if entry.frames <= frames)
        return values

    def __call__(self, trainer: Trainer, _batch: Any = None) -> None:
        frames = int(trainer.collected_frames)
        while self.applied < len(self.schedule) and self.schedule[self.applied].frames <= frames:
            self._set(self.schedule[self.applied].values)
            self.applied += 1
