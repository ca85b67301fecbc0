"""Full trainer checkpoints: what ``xdrl train --resume`` and a restored Tune trial load.

Each checkpoint is two files in ``checkpoints/``:

- ``trainer_<iteration>.pt``: a TorchRL checkpoint archive (one ZIP file written
  by :class:`torchrl.checkpoint.Checkpoint`, not a ``torch.save`` file). Its
  components are ``trainer`` (the trainer's ``state_dict``: models, optimizer,
  collector, counters, every registered hook and the metric router), ``extra``
  (the algorithm's state outside it: replay buffer, exploration schedule) and
  ``rng`` (:class:`~torchrl.checkpoint.GlobalRNGState`); its manifest metadata
  holds the xdrl format, the iteration and the collected frames. Each
  component's state is a ``torch.save`` payload inside the archive, read back
  with ``weights_only=True`` (torch's restricted unpickler: tensors, containers
  and plain values, never arbitrary code). Archives of the earlier TensorDict
  payload load too (TorchRL detects the payload format).
- ``trainer_<iteration>.json``, written once the archive is flushed to disk:
  its iteration, frames and SHA-256. A checkpoint counts only with a manifest
  whose digest matches, so a truncated or corrupted one is skipped for the
  previous one. TorchRL's manifest holds no digest and the library checks
  none: damage surfaces only through ZIP's per-member CRC-32, as whatever
  exception the reader hits first, and not for every byte.

The ``.pt`` name stays what run directories, the tests and Tune's ``trainer.pt``
have always used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import re
import shutil
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.checkpoint import Checkpoint, GlobalRNGState, StateDictCheckpointAdapter
from torchrl.trainers import Trainer
from torchrl.trainers.trainers import TrainerHookBase

from xdrl._compat import CHECKPOINT_SAVE_LEFTOVER
from xdrl.records.atomic import atomic_write_text
from xdrl.trainer_hooks.shutdown import train_error

_log = logging.getLogger(__name__)
#: 1: a ``torch.save`` payload (xdrl before the TorchRL checkpoint library); 2: a TorchRL checkpoint archive.
#: 3: the trainer state holds TorchRL's optimization stepper and xdrl's epsilon annealing.
FORMAT_VERSION = 3
#: Stop reason of a SIGTERM: what clouds and Kubernetes send before taking a node away.
PREEMPTED = "preempted"
#: The components of a trainer checkpoint.
COMPONENTS = ("trainer", "extra", "rng")
#: The file name of a trainer checkpoint (``trainer_<iteration>.pt``).
_CHECKPOINT_NAME = re.compile(r"trainer_\d+\.pt")
#: Accelerator RNG streams of :class:`GlobalRNGState`, and whether this machine has the device.
_ACCELERATOR_STREAMS: dict[str, Callable[[], bool]] = {
    "torch_cuda": torch.cuda.is_available,
    "torch_xpu": lambda: hasattr(torch, "xpu") and torch.xpu.is_available(),
    "torch_mps": torch.backends.mps.is_available,
}


class _StateSlot:
    """A checkpoint component for state handed over as data rather than held by a live object.

    Saving, ``state_dict`` returns what ``provide`` gives; loading, ``load_state_dict``
    keeps the checkpoint's state in :attr:`value`.
    """

    def __init__(self, provide: Callable[[], Any] | None = None) -> None:
        self.provide = provide
        self.value: Any = None

    def state_dict(self) -> Any:
        return self.provide()

    def load_state_dict(self, state_dict: Any) -> None:
        self.value = state_dict


def _checkpoint(components: Mapping[str, Any]) -> Checkpoint:
    """The trainer checkpoint's layout: one archive, every component through ``state_dict``."""
    checkpoint = Checkpoint(format="archive")
    for name in COMPONENTS:
        # Explicit: the adapter a component's type would select must not differ between save and load.
        # The torch payload: a save took 25-30 ms against 130 ms for the default per-tensor directory
        # payload (PPO CartPole, hook_overhead.py sizes); TorchRL reads it back with weights_only=True.
        checkpoint.register(name, components[name], adapter=StateDictCheckpointAdapter(payload_format="torch"))
    return checkpoint


def load_checkpoint(path: pathlib.Path) -> dict[str, Any]:
    """Read a trainer checkpoint archive into a payload, touching no live object.

    Returns:
        ``{"format", "iteration", "collected_frames", "trainer", "extra", "rng"}``:
        the metadata and each component's state (tensors on CPU), what
        :func:`xdrl.builder.experiment.restore` loads. Reading it whole first means a
        checkpoint that fails to load leaves the experiment untouched.

    Raises:
        torchrl.checkpoint.CheckpointError: not a TorchRL checkpoint, or a component is missing.
        ValueError: a checkpoint of another xdrl format.
    """
    slots = {name: _StateSlot() for name in COMPONENTS}
    result = _checkpoint(slots).load(path, map_location="cpu")
    metadata = dict(result.manifest["metadata"])
    if metadata.get("format") != FORMAT_VERSION:
        raise ValueError(f"xdrl checkpoint format {metadata.get('format')!r}; this xdrl reads {FORMAT_VERSION}")
    return {**metadata, **{name: slot.value for name, slot in slots.items()}}


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Put the Python, NumPy and torch RNG streams back where a checkpoint's ``rng`` state has them.

    The stream of an accelerator this machine lacks is left out: a run trained
    on a GPU may continue on a CPU-only node.
    """
    present = {key: value for key, value in state.items() if key not in _ACCELERATOR_STREAMS}
    for key, available in _ACCELERATOR_STREAMS.items():
        if key in state and available():
            present[key] = state[key]
    GlobalRNGState().load_state_dict(present)


def _sha256(path: pathlib.Path, *, sync: bool = False) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        if sync:
            # TorchRL renames its archive into place without an fsync: the manifest written next
            # must not vouch for data that is still only in the page cache.
            os.fsync(handle.fileno())
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_paths(directory: pathlib.Path) -> list[pathlib.Path]:
    """Checkpoint files in ``directory``, newest (highest iteration) first."""
    return sorted(pathlib.Path(directory).glob("trainer_*.pt"), reverse=True)


def checkpoint_iteration(path: pathlib.Path) -> int:
    """The iteration in a checkpoint's file name (``trainer_00000012.pt`` -> 12)."""
    return int(path.stem.rpartition("_")[2])


def remove_checkpoint(path: pathlib.Path) -> None:
    """Delete a checkpoint and its manifest (the manifest first: a half-deleted checkpoint is never usable)."""
    path.with_suffix(".json").unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def verify_checkpoint(path: pathlib.Path) -> None:
    """Check a checkpoint against its manifest.

    Raises:
        OSError: the manifest is missing (the write did not complete).
        ValueError: the SHA-256 differs (truncated or corrupted).
    """
    manifest = json.loads(path.with_suffix(".json").read_text())
    if manifest.get("sha256") != _sha256(path):
        raise ValueError("SHA-256 differs from its manifest (truncated or corrupted)")


def load_latest(directory: pathlib.Path) -> tuple[dict[str, Any], pathlib.Path] | None:
    """The newest complete checkpoint, skipping (with a warning) any that fails its check or its load.

    Returns:
        ``(payload, path)`` (the payload of :func:`load_checkpoint`), or ``None``
        when the directory holds no usable checkpoint.
    """
    for path in checkpoint_paths(directory):
        try:
            verify_checkpoint(path)
            return load_checkpoint(path), path
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
            _log.warning("skipping checkpoint %s: %s", path, error)
    return None


def remove_interrupted_saves(directory: pathlib.Path) -> list[pathlib.Path]:
    """Tidy what a process killed inside a checkpoint save left in ``directory``; return what was removed.

    A checkpoint moved aside while its replacement was being renamed in goes back
    to its name when the replacement never arrived; everything else is removed.
    """
    removed = []
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return removed
    for path in sorted(directory.iterdir()):
        match = CHECKPOINT_SAVE_LEFTOVER.fullmatch(path.name)
        if match is None or not _CHECKPOINT_NAME.fullmatch(match["name"]):
            continue
        original = directory / match["name"]
        if match["kind"] == "backup" and not original.exists():
            os.replace(path, original)
            _log.warning("restored %s, moved aside by a save that did not complete", original)
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


class TrainerCheckpointHook(TrainerHookBase):
    """Save the full trainer state every ``interval`` iterations, at the last one, and when asked to stop.

    Stages: ``post_steps_log`` (register it after the metrics router and the
    W&B flush, so a checkpoint never covers an iteration whose metrics are not
    out yet) and ``shutdown`` (a last checkpoint when training ended cleanly
    between two scheduled ones). Registered as the trainer module
    ``trainer_checkpoint``, so each checkpoint holds the hook's own state: the
    iteration of that checkpoint, which a restore takes as saved. A stop request
    belongs to the process that received the signal, not to the run: it is
    neither saved nor restored, and a run resumed after a preemption trains on.

    Args:
        directory: where checkpoints go.
        interval: iterations between checkpoints.
        keep: newest checkpoints kept.
        extra_state: the algorithm's state outside the trainer's ``state_dict``.
        iteration: returns the current iteration number.

    Examples:
        >>> hook = TrainerCheckpointHook("run/checkpoints", interval=5, keep=2, extra_state=dict, iteration=lambda: 0)
        >>> hook.state_dict()
        {'last_saved_iteration': None}
        >>> hook.load_state_dict({"last_saved_iteration": 10})
        >>> hook.last_saved_iteration, hook.stop_requested
        (10, False)
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
        #: Called before each save (the metrics router's fsync of ``metrics.jsonl``).
        self.before_save: list[Callable[[], None]] = []
        self._saving: int | None = None

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
        for callback in self.before_save:
            callback()
        trainer = self.trainer
        path = self.directory / f"trainer_{iteration:08d}.pt"
        frames = int(trainer.collected_frames)
        components = {"trainer": trainer, "extra": _StateSlot(self.extra_state), "rng": GlobalRNGState()}
        self._saving = iteration
        try:
            _checkpoint(components).save(
                path, metadata={"format": FORMAT_VERSION, "iteration": iteration, "collected_frames": frames}
            )
        finally:
            self._saving = None
        manifest = {"iteration": iteration, "collected_frames": frames, "sha256": _sha256(path, sync=True)}
        atomic_write_text(path.with_suffix(".json"), json.dumps(manifest, indent=1))
        self.last_saved_iteration, self.last_path = iteration, path
        self._prune(path)
        for callback in self.on_save:
            callback(path)
        return path

    def _prune(self, written: pathlib.Path) -> None:
        # Not torchrl.checkpoint.CheckpointRotation: it keeps the highest steps in the directory, so
        # a stale higher-numbered checkpoint (one a restore did not see) would make it delete the one
        # just written; it also knows nothing of the manifests beside the archives. Here only
        # checkpoints up to the one just written count, and that one is never deleted.
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

    def state_dict(self) -> dict[str, Any]:
        # The trainer's state_dict asks for this while ``save`` writes a checkpoint: the state it
        # records is the one once that checkpoint exists.
        saved = self.last_saved_iteration if self._saving is None else self._saving
        return {"last_saved_iteration": saved}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        saved = state_dict["last_saved_iteration"]
        self.last_saved_iteration = None if saved is None else int(saved)
        # The restored checkpoint's file may not be on this machine (a Tune trial retried elsewhere).
        self.last_path = None

    def register(self, trainer: Trainer, name: str = "trainer_checkpoint") -> None:
        """Save at ``post_steps_log`` and ``shutdown``; the hook's state goes into the trainer's checkpoints."""
        self.trainer = trainer
        trainer.register_module(name, self)
        trainer.register_op("post_steps_log", self)
        trainer.register_op("shutdown", self.at_shutdown)
