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

from xdrl.builder.experiment import hparams_in_force
from xdrl.config.algorithms import ALGORITHMS
from xdrl.config.schema import to_dict
from xdrl.config.search import with_values
from xdrl.distributed.bridge import CHECKPOINT_FILE, ORIGIN_FILE, TuneReportHook
from xdrl.distributed.plan import iterations_of
from xdrl.distributed.worker import (  # noqa: F401 - trainable_class: the tuner's
    TrialPreempted,
    count_trial,
    restored_iteration,
    running_trial,
    trainable_class,
)
from xdrl.records.atomic import atomic_write_text
from xdrl.records.experiment import PBT_EVENTS, TRIAL_INFO
from xdrl.records.lineage import METRICS_FILE, highest_iteration, jsonl_text, read_jsonl
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
    sampled: dict[str, Any],
    base: dict[str, Any],
    final_episodes: int = 0,
    experiment_dir: str | None = None,
    exploits: dict[str, Any] | None = None,
) -> None:
    """Ray Tune function trainable: validate, build, restore from Tune's checkpoint if any, train.

    ``experiment_dir`` is where the trial's files go (see :func:`trial_config`). With ``final_episodes``, the trained policy then plays that many deterministic
    episodes on a fresh environment and one more report carries their mean
    return as ``final/episode_reward_mean``. ``exploits`` (a population-based
    search: ``{"copy_replay_buffer": bool}``) says what a member keeps of its own
    when it is handed a donor's checkpoint (:func:`exploit_of`); a member's budget is then
    its own iterations (:func:`~xdrl.builder.experiment.give_member_budget`).
    """
    from ray import tune

    from xdrl.builder.experiment import build, restore
    from xdrl.config import validate

    started = time.time()
    process_trial = count_trial()
    context = tune.get_context()
    trial_id = context.get_trial_id()
    validated = validate(trial_config(base, sampled, context, experiment_dir))
    output_dir = pathlib.Path(validated.config.output_dir)
    # The trial's own trainer checkpoints: only the newest; Tune keeps the reported ones in its storage.
    experiment = build(validated, output_dir=output_dir, run_id=validated.config.logger.run_id)
    experiment.checkpoints.keep = 1
    # The trial's directory is a run directory like xdrl train's: xdrl eval and init.policy read it.
    write_run_config(output_dir, to_dict(validated.config))
    bridge = TuneReportHook(experiment.router, experiment.checkpoints, trial_id)
    bridge.register(experiment.trainer)

    # A retried or restored trial: Tune hands back its newest checkpoint; a PBT member that
    # exploits: the donor's. A trial started again without one (it had none yet) still tidies
    # its directory and keeps its first records.
    checkpoint = tune.get_checkpoint()
    payload = origin = None
    loading = time.perf_counter()
    size = 0
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            payload = load_tune_checkpoint(pathlib.Path(directory))
            origin = read_origin(pathlib.Path(directory))
            size = (pathlib.Path(directory) / CHECKPOINT_FILE).stat().st_size if payload is not None else 0
    exploit, event = None, None
    if payload is not None and origin is not None and origin.get("trial_id") not in (None, "", trial_id):
        exploit, event = exploit_of(experiment, origin, exploits or {}, ALGORITHMS[validated.algo.name].off_policy)
    iteration = restore(experiment, payload, exploit)
    if exploits is not None:  # a population member: its own iterations are its budget
        from xdrl.builder.experiment import give_member_budget

        collector = validated.config.collector
        give_member_budget(experiment, iterations_of(collector.total_frames, collector.frames_per_batch))
    if event is not None:
        _record_exploit(experiment, bridge, event, time.perf_counter() - loading, size)
    elif exploit is not None:  # the same exploit again (the member failed before its own checkpoint)
        bridge.generation = int(read_jsonl(output_dir / PBT_EVENTS)[-1]["generation"])
    if iteration or experiment.router.lineage.recorded:
        _log.info("trial %s continues after iteration %d", trial_id, iteration)
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
        raise TrialPreempted(f"trial {trial_id} preempted after iteration {experiment.router.iteration}")
    if final_episodes:
        from xdrl.builder.experiment import evaluate

        returns = evaluate(experiment, final_episodes)
        tune.report({**(experiment.router.last_row or {}), FINAL_RETURN: sum(returns) / len(returns)})


def read_origin(directory: pathlib.Path) -> dict[str, Any] | None:
    """The :data:`~xdrl.distributed.bridge.ORIGIN_FILE` of a Tune checkpoint directory (absent before xdrl wrote it)."""
    path = directory / ORIGIN_FILE
    return json.loads(path.read_text()) if path.exists() else None


def trial_index(trial_id: str) -> int:
    """The number Tune gives a trial within its experiment (``3e1f2_00003`` -> 3; -1 if it has none).

    Examples:
        >>> trial_index("3e1f2_00003"), trial_index("anything")
        (3, -1)
    """
    tail = trial_id.rpartition("_")[2]
    return int(tail) if tail.isdigit() else -1


def exploit_of(
    experiment: Any, origin: dict[str, Any], exploits: dict[str, Any], off_policy: bool
) -> tuple[Any, dict[str, Any] | None]:
    """How a PBT member takes the donor checkpoint ``origin`` describes: what it keeps, and the event to record.

    The member keeps its own iteration count: the one Tune continues it from
    (:func:`~xdrl.distributed.worker.restored_iteration`; its records' last row if Tune says
    nothing), so that its records and Tune's count on together. It draws its own random
    streams and, off-policy with ``copy_replay_buffer`` false, keeps its own replay buffer (from
    its newest own checkpoint; the donor's if it has none yet). A member that fails after an
    exploit, before its own first checkpoint, is handed the same donor checkpoint at the same
    count again: it continues from the same point (its later rows are re-run iterations whose
    records stand), and no second event is recorded. The same donor checkpoint taken again at a
    later count is a new exploit.

    Returns:
        The :class:`~xdrl.builder.experiment.Exploit`, and the event (``None`` for the same exploit again).
    """
    import zlib

    from xdrl.builder.checkpointing import load_latest
    from xdrl.builder.experiment import Exploit

    output_dir = experiment.output_dir
    restored = restored_iteration()
    clock = restored if restored is not None else highest_iteration(read_jsonl(output_dir / METRICS_FILE))
    events = read_jsonl(output_dir / PBT_EVENTS)
    taken = (origin["trial_id"], origin["iteration"], clock)
    if events and (events[-1]["donor"], events[-1]["donor_iteration"], events[-1]["iteration"]) == taken:
        event = None
    else:
        event = {
            "iteration": clock,
            "donor": origin["trial_id"],
            "donor_iteration": origin["iteration"],
            "donor_frames": origin.get("collected_frames"),
            "generation": int(origin.get("generation", 0)) + 1,
            "donor_hparams": origin.get("hparams", {}),
            "replay_buffer": None,
        }
    extra = None
    if off_policy and not exploits.get("copy_replay_buffer", True):
        own = load_latest(experiment.checkpoints.directory)
        extra = own[0]["extra"] if own is not None else None
    if event is not None and off_policy:
        event["replay_buffer"] = "donor" if extra is None else "own"
    seed = zlib.crc32(f"{experiment.config.seed}:{experiment.run_id}:{clock}".encode())
    return Exploit(clock=clock, extra=extra, seed=seed), event


def _record_exploit(experiment: Any, bridge: TuneReportHook, event: dict[str, Any], seconds: float, size: int) -> None:
    """Write the exploit to the trial's ``pbt_events.jsonl`` and its next metrics row (``pbt/*``)."""
    event = {
        **event,
        "frames": int(experiment.trainer.collected_frames),
        "hparams": hparams_in_force(experiment.parts, experiment.config.hooks.hparams),
        "seconds": round(seconds, 4),
        "checkpoint_bytes": size,
    }
    path = experiment.output_dir / PBT_EVENTS
    atomic_write_text(path, jsonl_text([*read_jsonl(path), event]))
    bridge.generation = event["generation"]
    experiment.router.next_row = {
        "pbt/donor": trial_index(event["donor"]),
        "pbt/donor_iteration": event["donor_iteration"],
        "pbt/generation": event["generation"],
        "pbt/exploit_seconds": event["seconds"],
        "pbt/checkpoint_mb": size / 1e6,
    }
    _log.info(
        "exploited %s at its iteration %s (generation %s)",
        event["donor"],
        event["donor_iteration"],
        event["generation"],
    )


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
