"""The metric bridge: one ``tune.report`` per trainer iteration, with a checkpoint when one was saved."""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from typing import Any

from tensordict import TensorDictBase
from torchrl.trainers import Trainer

from xdrl.builder.checkpointing import TrainerCheckpointHook
from xdrl.builder.metrics import MetricsRouter

#: Name of the trainer checkpoint (one TorchRL checkpoint archive) inside a Tune checkpoint directory.
CHECKPOINT_FILE = "trainer.pt"


class TuneReportHook:
    """Forward each iteration's metrics to ``ray.tune.report``, the numbers W&B and ``metrics.jsonl`` got.

    Stage: ``post_steps_log``, registered after the metric router, the W&B flush
    and the trainer checkpoint hook. A Tune result holds the latest value of
    every metric produced so far (evaluation metrics keep their last value in
    the iterations between evaluations, so the searcher and the scheduler
    always find them); the metrics produced in this iteration are exactly the
    iteration's row of record (:attr:`MetricsRouter.last_row`): the row of
    ``metrics.jsonl``, including ``counters/total_frames`` and ``counters/iter``.
    A restored trial re-running iterations that its records already hold reports
    their stored rows (the lineage rule of :mod:`xdrl.records.lineage`), so Tune's
    iteration counter, its checkpoints and the searcher see one history. When the
    checkpoint hook saved this iteration, the report carries it as a Tune
    ``Checkpoint``. The carried-forward values are the hook's state, so a
    restored trial's reports still carry the last evaluation.

    When Tune stops the trial, ``tune.report`` raises ``SystemExit``; the trainer's
    shutdown stage then finishes the W&B run with every row flushed.

    Args:
        router: the experiment's metric router.
        checkpoints: the experiment's trainer checkpoint hook.
    """

    def __init__(self, router: MetricsRouter, checkpoints: TrainerCheckpointHook) -> None:
        self.router = router
        self.checkpoints = checkpoints
        self.latest: dict[str, Any] = {}
        self._saved: pathlib.Path | None = None
        checkpoints.on_save.append(self._on_save)

    def _on_save(self, path: pathlib.Path) -> None:
        self._saved = path

    def __call__(self, _batch: TensorDictBase | None = None) -> None:
        from ray import tune

        self.latest.update(self.router.last_row or {})
        metrics = dict(self.latest)
        saved, self._saved = self._saved, None
        if saved is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="xdrl-tune-checkpoint-") as directory:
            # The checkpoint is one archive file: a hard link (a copy across file systems) hands it
            # over, and Tune copies the directory into its storage.
            target = pathlib.Path(directory) / CHECKPOINT_FILE
            try:
                os.link(saved, target)
            except OSError:
                shutil.copy2(saved, target)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    def state_dict(self) -> dict[str, Any]:
        # A checkpoint is saved in its iteration before this hook reports: include that iteration's row.
        return {"latest": {**self.latest, **(self.router.last_row or {})}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.latest = dict(state_dict["latest"])

    def register(self, trainer: Trainer, name: str = "tune_report") -> None:
        """Report at ``post_steps_log``; the carried-forward metrics go into the trainer's checkpoints."""
        trainer.register_module(name, self)
        trainer.register_op("post_steps_log", self)
