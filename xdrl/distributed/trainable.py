"""The trial function: one trial is one full xdrl training run, built by the same path as ``xdrl train``.

The Ray actor it runs in (SIGTERM, shutdown, exit) is :mod:`xdrl.distributed.worker`.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import re
import socket
import time
from typing import Any

from xdrl.config.schema import to_dict
from xdrl.config.search import with_values
from xdrl.distributed.bridge import CHECKPOINT_FILE, TuneReportHook
from xdrl.distributed.worker import (  # noqa: F401 - trainable_class: the tuner's
    TrialPreempted,
    count_trial,
    running_trial,
    trainable_class,
)
from xdrl.records.atomic import atomic_write_text
from xdrl.records.experiment import TRIAL_INFO
from xdrl.records.runs import write_run_config

_log = logging.getLogger(__name__)


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


def process_start_time() -> float | None:
    """When this process started (Unix time, to 10 ms), from Linux's ``/proc``; ``None`` elsewhere.

    Examples:
        >>> started = process_start_time()
        >>> started is None or 0 <= time.time() - started < 86_400 * 365
        True
    """
    try:
        stat = pathlib.Path("/proc/self/stat").read_text()
        uptime = float(pathlib.Path("/proc/uptime").read_text().split()[0])
    except OSError:
        return None
    # Field 22 of stat (after the parenthesised command name, the 20th): start time in clock ticks after boot.
    ticks = int(stat.rpartition(")")[2].split()[19])
    return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))


def _write_trial_info(
    directory: pathlib.Path, device: Any, started: float, resumed_after: int, process_trial: int
) -> None:
    import ray

    info = {
        "pid": os.getpid(),
        # When this worker process started: its start and imports come before ``started`` in a fresh one.
        "process_started": process_start_time(),
        "node": socket.gethostname(),
        "node_ip": ray.util.get_node_ip_address(),
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "node_id": ray.get_runtime_context().get_node_id(),
        "device": str(device),
        "started": started,
        # The iteration of the checkpoint this attempt continued from (0: the beginning).
        "resumed_after": resumed_after,
        # Trials started in this process so far, this one included (1: a fresh worker; more: a reused one).
        "process_trial": process_trial,
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
    from ray import tune

    from xdrl.builder.experiment import build, restore
    from xdrl.config import validate

    started = time.time()
    process_trial = count_trial()
    context = tune.get_context()
    validated = validate(trial_config(base, sampled, context, experiment_dir))
    output_dir = pathlib.Path(validated.config.output_dir)
    # The trial's own trainer checkpoints: only the newest; Tune keeps the reported ones in its storage.
    experiment = build(validated, output_dir=output_dir, run_id=validated.config.logger.run_id)
    experiment.checkpoints.keep = 1
    # The trial's directory is a run directory like xdrl train's: xdrl eval and init.policy read it.
    write_run_config(output_dir, to_dict(validated.config))
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
    _write_trial_info(output_dir, experiment.device, started, resumed_after=iteration, process_trial=process_trial)
    trainer = experiment.trainer
    # SIGTERM now stops this trial after its iteration, and marks its W&B run preempting at once.
    with running_trial(experiment.checkpoints, experiment.announce_preemption):
        try:
            if trainer.collected_frames < trainer.total_frames:
                trainer.train()
        finally:
            _record_finish(output_dir)
    from xdrl.builder.checkpointing import PREEMPTED

    if experiment.checkpoints.stopped_by == PREEMPTED:
        raise TrialPreempted(f"trial {context.get_trial_id()} preempted after iteration {experiment.router.iteration}")
    if final_episodes:
        from xdrl.builder.experiment import evaluate

        returns = evaluate(experiment, final_episodes)
        tune.report({**(experiment.router.last_row or {}), FINAL_RETURN: sum(returns) / len(returns)})


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
