"""The Ray actor side of a trial: SIGTERM as preemption, a stop that waits for the trainer's shutdown, a quiet exit.

A trial runs in a Ray actor whose main thread sits in Ray's task loop while the
trial function (:func:`xdrl.distributed.trainable.run_trial`) trains in another
thread. This module holds what belongs to that process rather than to the
training run: the SIGTERM handling of a preempted node, waiting for the
trainer's shutdown stage when Tune stops the trial, and releasing the worker's
resources before Ray ends its helper processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import signal
import tempfile
import threading
from typing import Any

from xdrl._compat import function_trainable_base, run_multiprocessing_finalizers

_log = logging.getLogger(__name__)
#: How long a stopping trial waits for its shutdown stage (W&B flush and finish).
SHUTDOWN_GRACE_SECONDS = 120.0
#: Clear while a trial trains in this process; set once its shutdown stage is over.
TRIAL_SHUT_DOWN = threading.Event()
TRIAL_SHUT_DOWN.set()
#: The running trial's checkpoint hook, for the SIGTERM handler (one trial per actor process).
_RUNNING: dict[str, Any] = {}
_PREEMPTION_LOCK = threading.Lock()


class TrialPreempted(RuntimeError):
    """The trial's process received SIGTERM; Tune retries it from the checkpoint it just saved."""


def install_preemption_handler() -> None:
    """On SIGTERM, let the running trial checkpoint, flush and finish W&B (as preempting), then exit.

    Must run in the actor's main thread (Trainable setup). Python runs signal
    handlers in the main thread only, and a Ray actor's main thread sits in Ray's
    C++ task loop, so a handler could wait for seconds. The signal is therefore
    also written to a wake-up pipe that a watcher thread reads at once; either
    path asks the training thread to stop after the current iteration. The trial
    then ends with :class:`TrialPreempted` once its checkpoint is reported, and
    Tune, having seen that checkpoint, lets the process go and retries the trial
    elsewhere. Without a trial training in this process, SIGTERM does what Ray
    makes it do.
    """
    from xdrl.builder.checkpointing import PREEMPTED

    previous = signal.getsignal(signal.SIGTERM)
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    earlier_wakeup = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def preempt() -> bool:
        with _PREEMPTION_LOCK:
            checkpoints = _RUNNING.get("checkpoints")
            if not _RUNNING.get("preempting") and checkpoints is not None and not TRIAL_SHUT_DOWN.is_set():
                _RUNNING["preempting"] = True
                checkpoints.request_stop(PREEMPTED)
                announce = _RUNNING.get("announce_preemption")
                if announce is not None:
                    # At once, not at the iteration's end: if the node goes down before that, the
                    # run is already known as preempted (resumable) rather than crashed.
                    with contextlib.suppress(Exception):
                        announce()
            return bool(_RUNNING.get("preempting"))

    def watch() -> None:
        while True:
            data = os.read(read_fd, 64)
            if earlier_wakeup != -1:  # keep whoever listened before informed
                with contextlib.suppress(OSError):
                    os.write(earlier_wakeup, data)
            if signal.SIGTERM in data:
                preempt()

    def handler(signum: int, frame: Any) -> None:
        if preempt():
            return  # the trial stops, reports its checkpoint, and Tune lets this process go
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):
            previous(signum, frame)

    threading.Thread(target=watch, name="xdrl-sigterm-watcher", daemon=True).start()
    signal.signal(signal.SIGTERM, handler)


def running_trial(checkpoints: Any, announce_preemption: Any = None) -> Any:
    """Context for the trial function while it trains in this process.

    SIGTERM reaches ``checkpoints`` (stop after this iteration, checkpoint) and calls
    ``announce_preemption`` at once (W&B marks the run preempting); ``xdrl drain`` finds
    the trial through :func:`running_trials` of this node.
    """
    return _RunningTrial(checkpoints, announce_preemption)


def trial_registry() -> pathlib.Path:
    """This node's directory of running trials: one file per trial process, named by its pid.

    Node-local (the node's temp dir): ``xdrl drain`` on the node reads it.
    """
    return pathlib.Path(tempfile.gettempdir()) / "xdrl-trials"


def running_trials() -> list[int]:
    """Pids of the xdrl trials training on this node."""
    directory = trial_registry()
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.is_dir() else []


class _RunningTrial:
    def __init__(self, checkpoints: Any, announce_preemption: Any) -> None:
        self.checkpoints = checkpoints
        self.announce_preemption = announce_preemption
        self.entry = trial_registry() / str(os.getpid())

    def __enter__(self) -> None:
        TRIAL_SHUT_DOWN.clear()
        _RUNNING["checkpoints"] = self.checkpoints
        _RUNNING["announce_preemption"] = self.announce_preemption
        self.entry.parent.mkdir(parents=True, exist_ok=True)
        self.entry.touch()

    def __exit__(self, *_exc: Any) -> None:
        self.entry.unlink(missing_ok=True)
        _RUNNING.pop("checkpoints", None)
        _RUNNING.pop("announce_preemption", None)
        TRIAL_SHUT_DOWN.set()


def wait_for_trial_shutdown() -> None:
    """Block until this process's trial has run its shutdown stage (bounded)."""
    if not TRIAL_SHUT_DOWN.wait(SHUTDOWN_GRACE_SECONDS):
        _log.warning("the trial's shutdown stage did not end within %.0f s", SHUTDOWN_GRACE_SECONDS)


def release_worker_resources() -> None:
    """Close what the finished trial leaves in this worker process while its helper processes still run.

    Ray ends a worker's child processes before the interpreter's exit handlers
    run. W&B's service and multiprocessing's resource tracker (TorchRL's storages
    hold named semaphores) are such children, so their exit handlers would then
    fail with "Connection lost" and ``KeyError`` tracebacks in the driver's
    output. The trial's runs are finished by now and the process ends after
    this (Tune does not reuse it): tear W&B down, then run the multiprocessing
    finalizers that the exit would run (they unlink the semaphores TorchRL's
    storages made).
    """
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None:
        try:
            wandb.teardown()
        except Exception as error:  # noqa: BLE001 - the trial's data is already safe
            _log.warning("W&B teardown failed: %s", error)
    run_multiprocessing_finalizers()


def trainable_class(function: Any) -> type:
    """Tune's function trainable for ``function``, whose stop waits for the trial's shutdown stage.

    When Tune stops a trial (scheduler decision, end of the experiment), the
    trainable's ``cleanup`` makes ``tune.report`` raise ``SystemExit`` in the
    training thread and returns at once; the actor is then let go. Waiting here
    until the thread has run the trainer's shutdown stage means the W&B run is
    flushed and finished before the process goes away.
    """
    base = function_trainable_base(function)

    class XdrlTrial(base):  # type: ignore[misc, valid-type]
        def setup(self, config: dict[str, Any]) -> None:
            install_preemption_handler()  # Trainable setup runs in the actor's main thread
            super().setup(config)

        def cleanup(self) -> None:
            super().cleanup()
            wait_for_trial_shutdown()
            release_worker_resources()

    XdrlTrial.__name__ = XdrlTrial.__qualname__ = base.__name__
    return XdrlTrial
