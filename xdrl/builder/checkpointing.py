"""Full trainer checkpoints: what ``xdrl train --resume`` and a restored Tune trial load.

A checkpoint ``checkpoints/trainer_<iteration>.pt`` holds the trainer's
``state_dict`` (models, optimizer, collector frame count, hook state, the
xdrl metric router), the algorithm's extra state (replay buffer, exploration
schedule) and the RNG states. It is written atomically; a manifest
``trainer_<iteration>.json`` written after it carries its SHA-256, so a
truncated or corrupted file is recognised and the previous checkpoint used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pathlib
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase
from torchrl.trainers import Trainer

from xdrl.records.atomic import atomic_torch_save, atomic_write_text
from xdrl.trainer_hooks._shutdown import train_error

_log = logging.getLogger(__name__)
FORMAT_VERSION = 1
#: Stop reason of a SIGTERM: what clouds and Kubernetes send before taking a node away.
PREEMPTED = "preempted"


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states, in types ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    numpy = state["numpy"]
    np.random.set_state(
        (numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"], numpy["cached"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_paths(directory: pathlib.Path) -> list[pathlib.Path]:
    """Checkpoint files in ``directory``, newest (highest iteration) first."""
    return sorted(pathlib.Path(directory).glob("trainer_*.pt"), reverse=True)


def checkpoint_iteration(path: pathlib.Path) -> int:
    """The iteration in a checkpoint's file name (``trainer_00000012.pt`` -> 12)."""
    return int(path.stem.rpartition("_")[2])


def remove_checkpoint(path: pathlib.Path) -> None:
    """Delete a checkpoint and its manifest."""
    path.with_suffix(".json").unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def load_latest(directory: pathlib.Path) -> tuple[dict[str, Any], pathlib.Path] | None:
    """The newest complete checkpoint, skipping (with a warning) any that fails its check.

    Returns:
        ``(payload, path)``, or ``None`` when the directory holds no usable checkpoint.
    """
    for path in checkpoint_paths(directory):
        manifest_path = path.with_suffix(".json")
        try:
            manifest = json.loads(manifest_path.read_text())
            if manifest.get("sha256") != _sha256(path):
                raise ValueError("SHA-256 differs from its manifest (truncated or corrupted)")
            payload = torch.load(path, weights_only=True, map_location="cpu")
            return payload, path
        except (OSError, ValueError, RuntimeError, KeyError, EOFError) as error:
            _log.warning("skipping checkpoint %s: %s", path, error)
    return None


class TrainerCheckpointHook:
    """Save the full trainer state every ``interval`` iterations, at the last one, and when asked to stop.

    Stages: ``post_steps_log`` (register it after the metrics router and the
    W&B flush, so a checkpoint never covers an iteration whose metrics are not
    out yet) and ``shutdown`` (a last checkpoint when training ended cleanly
    between two scheduled ones).

    Args:
        directory: where checkpoints go.
        interval: iterations between checkpoints.
        keep: newest checkpoints kept.
        extra_state: the algorithm's state outside the trainer's ``state_dict``.
        iteration: returns the current iteration number.
    """

    def __init__(
        self,
        directory: str | pathlib.Path,
        *,
        interval: int,
        keep: int,
        extra_state: Callable[[], dict[str, Any]],
        iteration: Callable[[], int],
    ) -> None:
        self.directory = pathlib.Path(directory)
        self.interval = interval
        self.keep = keep
        self.extra_state = extra_state
        self.iteration = iteration
        self.trainer: Trainer | None = None
        self.stop_requested = False
        self.stop_reason: str | None = None
        #: The reason training stopped before its budget, once this hook has acted on a stop request.
        self.stopped_by: str | None = None
        #: Called with the stop reason once the stop checkpoint is saved (in the training thread).
        self.on_stop: list[Callable[[str], None]] = []
        self.last_saved_iteration: int | None = None
        self.last_path: pathlib.Path | None = None
        #: Called with the new checkpoint's path after each save.
        self.on_save: list[Callable[[pathlib.Path], None]] = []

    def request_stop(self, reason: str = "stop requested") -> None:
        """Checkpoint at the end of the current iteration, then stop training (signal-safe)."""
        self.stop_reason = self.stop_reason or reason
        self.stop_requested = True

    def due(self) -> bool:
        """Whether this iteration's checkpoint is scheduled (every ``interval`` iterations, and the last)."""
        return self.finished() or self.iteration() % self.interval == 0

    def finished(self) -> bool:
        """Whether the trainer has collected its whole budget."""
        return self.trainer.collected_frames >= self.trainer.total_frames

    def __call__(self, _batch: TensorDictBase | None = None) -> None:
        # The stop flag is read once: a signal landing during this call is acted on at the next
        # iteration, never half here (a stop without this iteration's checkpoint, or a checkpoint
        # saved after the bridge reported). A stop asked during the last iteration changes nothing:
        # the run is complete, and its end checkpoint is saved anyway.
        stop = self.stop_requested and not self.finished()
        if stop or self.due():
            self.save()
        if stop:
            self.stopped_by = self.stop_reason
            for callback in self.on_stop:
                callback(self.stop_reason)
            self.trainer.request_stop(self.stop_reason)

    def save(self) -> pathlib.Path:
        """Write the checkpoint of the current iteration now."""
        iteration = self.iteration()
        if self.last_saved_iteration == iteration and self.last_path is not None:
            return self.last_path
        trainer = self.trainer
        payload = {
            "format": FORMAT_VERSION,
            "iteration": iteration,
            "collected_frames": int(trainer.collected_frames),
            "trainer": trainer.state_dict(),
            "extra": self.extra_state(),
            "rng": rng_state(),
        }
        path = self.directory / f"trainer_{iteration:08d}.pt"
        atomic_torch_save(payload, path)
        manifest = {"iteration": iteration, "collected_frames": payload["collected_frames"], "sha256": _sha256(path)}
        atomic_write_text(path.with_suffix(".json"), json.dumps(manifest, indent=1))
        self.last_saved_iteration, self.last_path = iteration, path
        self._prune(path)
        for callback in self.on_save:
            callback(path)
        return path

    def _prune(self, written: pathlib.Path) -> None:
        # Only checkpoints up to the one just written count: it is never deleted, whatever stale
        # higher-numbered files a restore may have missed.
        iteration = checkpoint_iteration(written)
        older = [p for p in checkpoint_paths(self.directory) if checkpoint_iteration(p) <= iteration and p != written]
        for old in older[max(self.keep - 1, 0) :]:
            remove_checkpoint(old)

    def discard_after(self, iteration: int) -> list[pathlib.Path]:
        """Remove checkpoints of iterations after ``iteration`` (a restore continues from ``iteration``).

        They belong to a lineage the restore abandons (a newer local checkpoint that
        Tune never registered, or a corrupted one that was skipped); left in place,
        the directory would disagree with the restored state.
        """
        stale = [p for p in checkpoint_paths(self.directory) if checkpoint_iteration(p) > iteration]
        for path in stale:
            _log.warning("removing checkpoint %s: the run continues from iteration %d", path, iteration)
            remove_checkpoint(path)
        return stale

    def at_shutdown(self) -> None:
        # After an exception the trainer may be mid-iteration: never checkpoint that.
        if train_error(self.trainer) is None and self.iteration() > 0:
            self.save()

    def register(self, trainer: Trainer) -> None:
        self.trainer = trainer
        trainer.register_op("post_steps_log", self)
        trainer.register_op("shutdown", self.at_shutdown)
