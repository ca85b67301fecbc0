"""The one door to library internals: every private attribute or undocumented behaviour xdrl relies on.

Each access below names the release it was verified on and why xdrl needs it;
``tests/test_compat.py`` checks each against the installed libraries, so an
upgrade that changes one fails there, in one place, with the name of what
changed. Nothing else in xdrl touches a private name of TorchRL, Ray, W&B or
the standard library.

Verified on: torch 2.13.0, torchrl 0.14.1, ray 2.60.0, wandb 0.31.0, CPython 3.11.
"""

from __future__ import annotations

import functools
import pathlib
import re
from collections.abc import Callable
from typing import Any

# TorchRL 0.14.1 Trainer ---------------------------------------------------------------
# ``Trainer.register_op`` only appends to a stage. Two ops must run FIRST in their stage:
# the metric router opens the iteration before any hook of ``batch_process`` logs, and the
# shutdown guard marks that TorchRL itself reached the ``shutdown`` stage. The stages are
# lists of ``(op, kwargs)`` in ``trainer._<stage>_ops`` (torchrl 0.14.1, trainers.py).
_STAGE_LISTS = {"batch_process": "_batch_process_ops", "shutdown": "_shutdown_ops"}


def stage_ops(trainer: Any, stage: str) -> list[tuple[Callable[..., Any], dict[str, Any]]]:
    """The ``(op, kwargs)`` list of a trainer stage (``batch_process`` or ``shutdown``)."""
    return getattr(trainer, _STAGE_LISTS[stage])


def register_op_first(trainer: Any, stage: str, op: Callable[..., Any]) -> None:
    """Register ``op`` as the first op of ``stage`` (``register_op`` appends)."""
    stage_ops(trainer, stage).insert(0, (op, {}))


def wrap_train(trainer: Any, wrapper: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replace ``trainer.train`` on this instance by ``wrapper(original)``.

    TorchRL 0.14.1's ``Trainer.train`` runs the ``shutdown`` stage only after a loop
    that ended normally; xdrl runs it on errors too (see
    :mod:`xdrl.trainer_hooks.shutdown`). ``train`` is a plain method, so an instance
    attribute shadows it.
    """
    trainer.train = functools.wraps(trainer.train)(wrapper(trainer.train))


def set_scheduler_last_lr(scheduler: Any, lrs: list[float]) -> None:
    """An LR scheduler's ``get_last_lr()`` after its optimizer's rates were set by hand (torch 2.13.0).

    ``_last_lr`` is what ``get_last_lr()`` returns; torch only sets it in ``step()``.
    """
    scheduler._last_lr = list(lrs)


# TorchRL 0.14.1 checkpoints -------------------------------------------------------------
#: What an interrupted ``torchrl.checkpoint.Checkpoint.save`` leaves beside ``<name>`` (torchrl 0.14.1,
#: ``_checkpoint.py``): its staging directory, the archive being written, and the previous ``<name>``
#: moved aside while the new one is renamed in. Undocumented; pinned by
#: ``tests/builder/test_checkpointing.py::test_a_killed_save_leaves_only_names_restore_recognises``.
CHECKPOINT_SAVE_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?P<kind>stage|archive|backup)-[0-9a-f]{32}")


# TorchRL 0.14.1 WandbLogger -----------------------------------------------------------
def wandb_step_registry(logger: Any) -> tuple[tuple[str, int], ...]:
    """A ``WandbLogger``'s per-namespace step counters, as a comparable tuple (torchrl 0.14.1).

    The flush hook compares them to tell whether a logger it did not wrap logged
    something since the last commit.
    """
    registry = getattr(logger, "_step_registry", None) or {}
    return tuple(sorted((str(k), int(v)) for k, v in registry.items()))


# Python 3.11 multiprocessing -------------------------------------------------------------
def run_multiprocessing_finalizers() -> None:
    """Run the finalizers that the interpreter's exit would run (``multiprocessing.util``, CPython 3.11).

    Ray ends a worker's child processes (multiprocessing's resource tracker among
    them) before the worker's exit handlers run; TorchRL's storages hold named
    semaphores whose finalizers then fail with ``KeyError`` tracebacks. Running them
    while the tracker lives unlinks the semaphores quietly.
    """
    import multiprocessing.util

    multiprocessing.util._run_finalizers(0)


# Ray 2.60 Tune ------------------------------------------------------------------------------
def function_trainable_base(function: Callable[..., Any]) -> type:
    """The class Tune makes of a function trainable, for xdrl to subclass (ray 2.60.0).

    ``wrap_function`` is what ``Tuner`` applies to a function; subclassing its result
    lets a trial run code in the actor's main thread (``setup``: signal handlers) and
    after Tune's ``cleanup`` (waiting for the trainer's shutdown stage).
    """
    from ray.tune.trainable.function_trainable import wrap_function

    return wrap_function(function)


def restore_logger_file(callback: Any, file_name: str, trial: Any) -> None:
    """Let a Tune ``LoggerCallback`` fetch a restarted trial's log file from the storage (ray 2.60.0)."""
    callback._restore_from_remote(file_name, trial)


class KeepDriverLogCopy:
    """Mixin for a Tune ``LoggerCallback``: keep the driver's own copy of a restarted trial's log file.

    When a trial restarts, Tune's loggers (ray 2.60.0) copy its file back from the
    storage over the driver's copy in its staging directory
    (``LoggerCallback._restore_from_remote``); the storage's copy is only as new as
    the last sync, so the rows since then would be lost. The driver's copy, when it
    has one, is the newest; a driver without one (a restored driver) still fetches it.
    """

    def _restore_from_remote(self, file_name: str, trial: Any) -> None:
        local = pathlib.Path(trial.local_path, file_name)
        if local.exists() and local.stat().st_size > 0:
            return
        super()._restore_from_remote(file_name, trial)  # type: ignore[misc]


def saved_trial_statuses(state_file: pathlib.Path) -> dict[str, str]:
    """Trial id -> status as Tune saved it in an ``experiment_state-*.json`` (ray 2.60.0).

    Ray's own reader (``ExperimentAnalysis``) turns RUNNING into PENDING when it
    loads a trial, and a report on a running experiment must tell them apart. Each
    entry of ``trial_data`` is a pair of JSON strings, the trial's state then its run
    metadata.
    """
    import json

    statuses = {}
    for entry in json.loads(pathlib.Path(state_file).read_text())["trial_data"]:
        trial = json.loads(entry[0])
        statuses[trial["trial_id"]] = trial["status"]
    return statuses


def request_node_drain(address: str | None, *, deadline_seconds: int, message: str) -> bool:
    """Ask Ray's GCS to drain the local node for preemption (``ray drain-node``; ray 2.60.0).

    The command is developer-facing (hidden from ``ray --help``, outside Ray's API stability
    guarantees); it is the call Ray's autoscaler makes before a preemption. A drained node gets
    no new tasks or actors, so a trial retried now goes elsewhere. Returns whether Ray accepted.
    """
    import subprocess
    import sys

    argv = [sys.executable, "-m", "ray.scripts.scripts", "drain-node", "--reason", "DRAIN_NODE_REASON_PREEMPTION"]
    argv += ["--reason-message", message, "--deadline-remaining-seconds", str(deadline_seconds)]
    if address:
        argv += ["--address", address]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return done.returncode == 0


def member_keeps_its_clock(scheduler: Any, trial: Any) -> None:
    """After a PBT exploit, let the member count its own iterations on from where it was (ray 2.60.0).

    Ray's ``PopulationBasedTraining._exploit`` hands the member the donor's checkpoint
    together with the donor's last result, and the restored trainable takes its
    ``training_iteration`` from that result: the member's Tune history would jump to
    the donor's count (iterations missing, or repeated). xdrl keeps one history per
    member: its iteration counter goes on from the member's own last result (the
    trainer state, frames included, is still the donor's). The scheduler's time
    bookkeeping of the member follows the same clock. Reads and writes
    ``scheduler._trial_state`` and the trial's checkpoint manager's
    ``_latest_checkpoint_result``.
    """
    from ray.tune.result import TRAINING_ITERATION

    state = scheduler._trial_state[trial]
    own = state.last_result or {}
    if TRAINING_ITERATION not in own:
        return
    manager = trial.run_metadata.checkpoint_manager
    handed = manager._latest_checkpoint_result
    metrics = {**handed.metrics, TRAINING_ITERATION: own[TRAINING_ITERATION]}
    manager._latest_checkpoint_result = type(handed)(checkpoint=handed.checkpoint, metrics=metrics)
    state.last_train_time = own[TRAINING_ITERATION]
    state.last_perturbation_time = own[TRAINING_ITERATION]


# W&B 0.31 offline run files -------------------------------------------------------------
#: An offline run's ``run-<id>.wandb`` (wandb 0.31.0): a LevelDB-style log. A 7-byte header
#: (``:W&B``, magic ``0xBEE1``, version 0), then 32 KiB blocks of chunks, each with a CRC-32,
#: a length and a type (full, first, middle, last). Not a documented format: W&B's own
#: readers are internal too.
WANDB_RUN_FILE = {
    "header": b":W&B",
    "header_size": 7,
    "block": 32 * 1024,
    "full": 1,
    "first": 2,
    "middle": 3,
    "last": 4,
}


def wandb_record_class() -> type:
    """The protobuf message of every payload of a run file (``wandb.proto.wandb_internal_pb2.Record``)."""
    from wandb.proto import wandb_internal_pb2

    return wandb_internal_pb2.Record
