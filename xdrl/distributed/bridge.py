"""The metric bridge: one ``tune.report`` per trainer iteration, with a checkpoint when one was saved."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
from typing import Any

from tensordict import TensorDictBase
from torchrl.trainers import Trainer

from xdrl.builder.checkpointing import TrainerCheckpointHook
from xdrl.builder.metrics import MetricsRouter
from xdrl.records.lineage import FRAMES, HPARAMS

#: Name of the trainer checkpoint (one TorchRL checkpoint archive) inside a Tune checkpoint directory.
CHECKPOINT_FILE = "trainer.pt"
#: Beside it: which trial saved it, at which of its iterations and frames, in which PBT generation, with
#: which hyperparameters in force. A trial handed a checkpoint of another trial is a PBT member exploiting it.
ORIGIN_FILE = "origin.json"


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

    Each Tune checkpoint also holds :data:`ORIGIN_FILE`: the trial that saved it and
    where it was (its iteration, frames, PBT generation and ``hparams/*`` in force).

    Args:
        router: the experiment's metric router.
        checkpoints: the experiment's trainer checkpoint hook.
        trial_id: the Tune trial this hook reports for.
    """

    def __init__(self, router: MetricsRouter, checkpoints: TrainerCheckpointHook, trial_id: str = "") -> None:
        self.router = router
        self.checkpoints = checkpoints
        self.trial_id = trial_id
        self.latest: dict[str, Any] = {}
        #: Exploits in this trainer state's lineage (a PBT member's is its donor's plus one).
        self.generation = 0
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
            (pathlib.Path(directory) / ORIGIN_FILE).write_text(json.dumps(self.origin(metrics)))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    def origin(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """What :data:`ORIGIN_FILE` says of the checkpoint reported with ``metrics``."""
        return {
            "trial_id": self.trial_id,
            "iteration": self.router.iteration,
            "collected_frames": metrics.get(FRAMES),
            "generation": self.generation,
            "hparams": {key: value for key, value in metrics.items() if key.startswith(HPARAMS)},
        }

    def state_dict(self) -> dict[str, Any]:
        # A checkpoint is saved in its iteration before this hook reports: include that iteration's row.
        return {"latest": {**self.latest, **(self.router.last_row or {})}, "generation": self.generation}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.latest = dict(state_dict["latest"])
        self.generation = int(state_dict.get("generation", 0))  # absent in checkpoints of earlier xdrl

    def register(self, trainer: Trainer, name: str = "tune_report") -> None:
        """Report at ``post_steps_log``; the carried-forward metrics go into the trainer's checkpoints."""
        trainer.register_module(name, self)
        trainer.register_op("post_steps_log", self)
