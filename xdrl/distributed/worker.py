"""The Ray actor side of a trial: SIGTERM as preemption, a stop that waits for the trainer's shutdown, a quiet exit.

A trial runs in a Ray actor whose main thread sits in Ray's task loop while the
trial function (:func:`xdrl.distributed.trainable.run_trial`) trains in another
thread. This module holds what belongs to that process rather than to the
training run: the SIGTERM handling of a preempted node, waiting for the
trainer's shutdown stage when Tune stops the trial, handing a reused worker
(``search.reuse_actors``) from one trial to the next with nothing of the first
left over, and releasing the worker's resources before Ray ends its helper
processes.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import pathlib
import signal
import sys
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
#: The running trial's checkpoint hook, for the SIGTERM handler (one trial at a time per actor process).
_RUNNING: dict[str, Any] = {}
_PREEMPTION_LOCK = threading.Lock()
#: This process's SIGTERM handler and wake-up pipe, once installed (one per process, kept across reused trials).
_HANDLER: dict[str, Any] = {}
#: Trials this process has started (a reused worker runs several, one after the other).
_TRIALS_STARTED = [0]
#: Ray Tune's wait for a finished trial's thread before it reuses the actor (documented in "Environment
#: variables used by Ray Tune"; default 2 s, read at every reset). A trial stopped by the scheduler runs
#: its shutdown stage (W&B flush and finish) in that thread, which takes longer than 2 s on a busy node.
THREAD_TIMEOUT_VAR = "TUNE_FUNCTION_THREAD_TIMEOUT_S"
#: Environment variables a reused worker keeps from one trial to the next: the address of the W&B
#: service its first trial started (``wandb.setup``), which the next trials' runs share.
KEPT_BETWEEN_TRIALS = frozenset({"WANDB_SERVICE"})


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

    Installed once per process: a reused worker calls this again before each trial,
    which puts the handler and the wake-up pipe back if something replaced them and
    otherwise changes nothing (the handler finds the running trial in ``_RUNNING``).
    """
    from xdrl.builder.checkpointing import PREEMPTED

    if _HANDLER:
        _rearm_preemption_handler()
        return
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
            earlier = _HANDLER["earlier_wakeup"]
            if earlier != -1:  # keep whoever listened before informed
                with contextlib.suppress(OSError):
                    os.write(earlier, data)
            if signal.SIGTERM in data:
                preempt()

    def handler(signum: int, frame: Any) -> None:
        if preempt():
            return  # the trial stops, reports its checkpoint, and Tune lets this process go
        _HANDLER["disarmed"] = True  # the process goes: no later trial may re-arm it
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            os.kill(os.getpid(), signum)  # the default action: the process ends

    _HANDLER.update(handler=handler, write_fd=write_fd, earlier_wakeup=earlier_wakeup, disarmed=False)
    threading.Thread(target=watch, name="xdrl-sigterm-watcher", daemon=True).start()
    signal.signal(signal.SIGTERM, handler)


def _rearm_preemption_handler() -> None:
    """Put this process's SIGTERM handler and wake-up pipe back if something replaced them (main thread)."""
    if _HANDLER["disarmed"]:
        return
    if signal.getsignal(signal.SIGTERM) is not _HANDLER["handler"]:
        _log.warning("the SIGTERM handler was replaced since the last trial; xdrl's preemption handler is back")
        signal.signal(signal.SIGTERM, _HANDLER["handler"])
    earlier = signal.set_wakeup_fd(_HANDLER["write_fd"], warn_on_full_buffer=False)
    if earlier not in (-1, _HANDLER["write_fd"]):
        _HANDLER["earlier_wakeup"] = earlier  # whoever set it since still hears of every signal


def preemption_handler_armed() -> bool:
    """Whether SIGTERM in this process reaches the running trial (xdrl's handler is installed and armed)."""
    return bool(_HANDLER) and not _HANDLER["disarmed"] and signal.getsignal(signal.SIGTERM) is _HANDLER["handler"]


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
        with _PREEMPTION_LOCK:
            TRIAL_SHUT_DOWN.clear()
            _RUNNING.clear()  # nothing of an earlier trial of this (reused) process
            _RUNNING["checkpoints"] = self.checkpoints
            _RUNNING["announce_preemption"] = self.announce_preemption
        self.entry.parent.mkdir(parents=True, exist_ok=True)
        self.entry.touch()

    def __exit__(self, *_exc: Any) -> None:
        self.entry.unlink(missing_ok=True)
        with _PREEMPTION_LOCK:
            # A SIGTERM from now on finds no trial: Ray's own handling ends the process.
            _RUNNING.clear()
            TRIAL_SHUT_DOWN.set()


#: Tune's iteration count of the trial restored in this actor (``training_iteration`` after ``restore``).
_RESTORED: dict[str, int] = {}


def restored_iteration() -> int | None:
    """The iteration Tune continues this process's trial from, if Tune restored it from a checkpoint.

    Tune takes it from the result handed with the checkpoint: for a PBT member handed a donor's
    checkpoint, the member's own count (:func:`xdrl._compat.member_keeps_its_clock`), which its
    records must then continue from too.
    """
    return _RESTORED.get("iteration")


def count_trial() -> int:
    """Note that a trial starts in this process; returns how many have (1: a fresh worker)."""
    _TRIALS_STARTED[0] += 1
    return _TRIALS_STARTED[0]


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
    this (Tune stops an actor it reuses only when no trial needs it any more):
    tear W&B down, then run the multiprocessing finalizers that the exit would
    run (they unlink the semaphores TorchRL's storages made).
    """
    wandb = sys.modules.get("wandb")
    if wandb is not None:
        try:
            wandb.teardown()
        except Exception as error:  # noqa: BLE001 - the trial's data is already safe
            _log.warning("W&B teardown failed: %s", error)
    run_multiprocessing_finalizers()


#: What this worker process started with, restored between reused trials (see :func:`reset_for_next_trial`).
_WORKER_START: dict[str, Any] = {}


def remember_worker_start() -> None:
    """Note the process-wide settings the worker starts with (once per process, before its first trial).

    Also moves everything the imports made (torch, TorchRL, Ray: some 500,000 objects) out of
    the garbage collector's reach (``gc.freeze``): they live as long as the process, and a full
    collection would otherwise walk them all, 0.25 s each time, during training and between trials.
    Reference counting still frees them; only a cycle among them would stay.
    """
    if _WORKER_START:
        return
    _WORKER_START["environ"] = dict(os.environ)
    torch = sys.modules.get("torch")
    _WORKER_START["torch_threads"] = torch.get_num_threads() if torch is not None else None
    gc.freeze()


def reset_for_next_trial() -> None:
    """Hand a reused worker (``search.reuse_actors``) to its next trial with nothing of the last one left.

    Runs in the actor's main thread once Tune has joined the last trial's thread:
    its trainer ran its shutdown stage (W&B run flushed and finished, files
    closed) and left ``running_trial`` (registry entry removed, SIGTERM handler
    pointing at no trial). What the process may still hold of it:

    - a W&B run left open is finished as failed, so that the next trial's
      ``wandb.init`` starts its own run; W&B's service stays up and serves the
      next trials' runs (that is what reuse saves);
    - the environment goes back to the worker's own, but for
      :data:`KEPT_BETWEEN_TRIALS`: TorchRL's ``WandbLogger`` sets
      ``WANDB_MODE=dryrun`` for an offline run, which would make a later trial's
      online run offline;
    - torch's thread count goes back to the worker's (a trial with
      ``resources.num_threads=0`` keeps torch's default, not the last trial's);
    - a garbage collection, so the last trial's environments, collector and
      storages (and the named semaphores they hold) go now, not during the
      next trial; what survives it is frozen (``gc.freeze``), so that the
      next collections do not walk it again (see :func:`remember_worker_start`);
    - the SIGTERM handler is re-armed if something replaced it; the next trial's
      :func:`running_trial` points it at that trial.

    The next trial's build sets its own torch threads and seeds (``prepare_process``).
    """
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        _log.warning("the last trial left its W&B run %s open; finishing it as failed", wandb.run.id)
        wandb.run.finish(exit_code=1)
    environ = _WORKER_START.get("environ")
    if environ is not None:
        for key in set(os.environ) - set(environ) - KEPT_BETWEEN_TRIALS:
            del os.environ[key]
        for key, value in environ.items():
            if key not in KEPT_BETWEEN_TRIALS and os.environ.get(key) != value:
                os.environ[key] = value
    torch = sys.modules.get("torch")
    if torch is not None and _WORKER_START.get("torch_threads"):
        torch.set_num_threads(_WORKER_START["torch_threads"])
    gc.collect()
    gc.freeze()
    install_preemption_handler()


def trainable_class(function: Any) -> type:
    """Tune's function trainable for ``function``: SIGTERM as preemption, a stop that waits, a real reset.

    When Tune stops a trial (scheduler decision, end of the experiment), the
    trainable's ``cleanup`` makes ``tune.report`` raise ``SystemExit`` in the
    training thread and returns at once; the actor is then let go. Waiting here
    until the thread has run the trainer's shutdown stage means the W&B run is
    flushed and finished before the process goes away.

    With ``search.reuse_actors``, Tune gives a finished trial's actor the next
    trial instead (``reset_config``): Tune's reset waits for the last trial's
    thread (up to :data:`SHUTDOWN_GRACE_SECONDS`, for a trial the scheduler
    stopped to finish its W&B run), then :func:`reset_for_next_trial` clears what
    the process holds of it. Each trial still builds its own trainer, W&B run and
    files; the worker start, the imports and W&B's service are what it saves.
    """
    base = function_trainable_base(function)

    class XdrlTrial(base):  # type: ignore[misc, valid-type]
        def setup(self, config: dict[str, Any]) -> None:
            _RESTORED.clear()
            os.environ.setdefault(THREAD_TIMEOUT_VAR, str(int(SHUTDOWN_GRACE_SECONDS)))
            install_preemption_handler()  # Trainable setup runs in the actor's main thread
            remember_worker_start()
            super().setup(config)

        def restore(self, checkpoint_path: Any) -> Any:
            restored = super().restore(checkpoint_path)
            _RESTORED["iteration"] = self.training_iteration  # before the trial function starts
            return restored

        def reset_config(self, new_config: dict[str, Any]) -> bool:
            _RESTORED.clear()
            if not super().reset_config(new_config):
                # Tune then fails the trial it meant to start here (a shutdown stage that hangs).
                _log.warning("the last trial's thread did not end within %s s", os.environ.get(THREAD_TIMEOUT_VAR))
                return False
            reset_for_next_trial()
            return True

        def cleanup(self) -> None:
            super().cleanup()
            wait_for_trial_shutdown()
            release_worker_resources()

    XdrlTrial.__name__ = XdrlTrial.__qualname__ = base.__name__
    return XdrlTrial
