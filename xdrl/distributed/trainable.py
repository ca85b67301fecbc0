"""The Tune trainable: one trial is one full xdrl training run, built by the same path as ``xdrl train``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import re
import signal
import socket
import threading
import time
import warnings
from typing import Any

from xdrl._compat import function_trainable_base, run_multiprocessing_finalizers
from xdrl.distributed.bridge import CHECKPOINT_FILE, TuneReportHook
from xdrl.distributed.search import with_values
from xdrl.records.atomic import atomic_write_text

_log = logging.getLogger(__name__)
#: Written in every trial directory: where and on what the trial ran.
TRIAL_INFO = "trial_info.json"
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


def wandb_run_id(trial_id: str) -> str:
    """The W&B run id of a trial: its Tune trial id (unique per experiment, stable across retries)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", trial_id)


def trial_config(
    base: dict[str, Any], sampled: dict[str, Any], context: Any, experiment_dir: str | None = None
) -> dict[str, Any]:
    """The base experiment config with the trial's sampled values, its W&B identity and its directory.

    With ``experiment_dir`` (the experiment's directory when the storage is a path
    every node mounts), the trial writes its files (metrics, trial info, policy
    and trainer checkpoints, W&B) straight into its directory there, from whichever
    node it runs on. Otherwise (a bucket URI) they stay in Tune's staging directory
    on the trial's node.
    """
    raw = with_values(base, sampled)
    raw["search"] = None
    logger = raw["logger"]
    logger["run_id"] = wandb_run_id(context.get_trial_id())
    logger["group"] = logger["group"] or context.get_experiment_name()
    logger["run_name"] = context.get_trial_name()
    staging = pathlib.Path(context.get_trial_dir())
    raw["output_dir"] = str(pathlib.Path(experiment_dir) / staging.name) if experiment_dir else str(staging)
    return raw


def _write_trial_info(directory: pathlib.Path, device: Any, started: float, resumed_after: int) -> None:
    import ray

    info = {
        "pid": os.getpid(),
        "node": socket.gethostname(),
        "node_ip": ray.util.get_node_ip_address(),
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "node_id": ray.get_runtime_context().get_node_id(),
        "device": str(device),
        "started": started,
        # The iteration of the checkpoint this attempt continued from (0: the beginning).
        "resumed_after": resumed_after,
        "finished": None,
    }
    path = directory / TRIAL_INFO
    history = json.loads(path.read_text()) if path.exists() else []
    history.append(info)
    atomic_write_text(path, json.dumps(history, indent=1))


def _record_finish(directory: pathlib.Path) -> None:
    path = directory / TRIAL_INFO
    history = json.loads(path.read_text())
    history[-1]["finished"] = time.time()
    atomic_write_text(path, json.dumps(history, indent=1))


#: Key of the final evaluation a trial reports when asked for one (``xdrl confirm``).
FINAL_RETURN = "final/episode_reward_mean"


def run_trial(
    sampled: dict[str, Any], base: dict[str, Any], final_episodes: int = 0, experiment_dir: str | None = None
) -> None:
    """Ray Tune function trainable: validate, build, restore from Tune's checkpoint if any, train.

    ``experiment_dir`` is where the trial's files go (see :func:`trial_config`). With ``final_episodes``, the trained policy then plays that many deterministic
    episodes on a fresh environment and one more report carries their mean
    return as ``final/episode_reward_mean``.
    """
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*experimental/prototype.*")
    from ray import tune

    from xdrl.builder.experiment import build, restore
    from xdrl.config import validate

    started = time.time()
    context = tune.get_context()
    validated = validate(trial_config(base, sampled, context, experiment_dir))
    output_dir = pathlib.Path(validated.config.output_dir)
    # The trial's own trainer checkpoints: only the newest; Tune keeps the reported ones in its storage.
    experiment = build(validated, output_dir=output_dir, run_id=validated.config.logger.run_id)
    experiment.checkpoints.keep = 1
    TuneReportHook(experiment.router, experiment.checkpoints).register(experiment.trainer)

    # A retried or restored trial: Tune hands back its newest checkpoint. A trial started again
    # without one (it had none yet) still tidies its directory and keeps its first records.
    checkpoint = tune.get_checkpoint()
    payload = None
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            payload = load_tune_checkpoint(pathlib.Path(directory))
    iteration = restore(experiment, payload)
    if iteration or experiment.router.lineage.recorded:
        _log.info("trial %s continues after iteration %d", context.get_trial_id(), iteration)
    _write_trial_info(output_dir, experiment.device, started, resumed_after=iteration)
    trainer = experiment.trainer
    TRIAL_SHUT_DOWN.clear()
    _RUNNING["checkpoints"] = experiment.checkpoints
    try:
        if trainer.collected_frames < trainer.total_frames:
            trainer.train()
    finally:
        _RUNNING.pop("checkpoints", None)
        _record_finish(output_dir)
        TRIAL_SHUT_DOWN.set()
    from xdrl.builder.checkpointing import PREEMPTED

    if experiment.checkpoints.stopped_by == PREEMPTED:
        raise TrialPreempted(f"trial {context.get_trial_id()} preempted after iteration {experiment.router.iteration}")
    if final_episodes:
        from xdrl.builder.experiment import evaluate

        returns = evaluate(experiment, final_episodes)
        tune.report({**(experiment.router.last_row or {}), FINAL_RETURN: sum(returns) / len(returns)})


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


def load_tune_checkpoint(directory: pathlib.Path) -> dict[str, Any] | None:
    """The trainer payload stored in a Tune checkpoint directory.

    Read whole (:func:`xdrl.builder.checkpointing.load_checkpoint`) while ``directory``
    exists: Tune may remove it when ``as_directory`` ends.
    """
    from xdrl.builder.checkpointing import load_checkpoint

    path = directory / CHECKPOINT_FILE
    if not path.exists():
        return None
    return load_checkpoint(path)
