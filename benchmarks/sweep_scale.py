"""What a sweep costs per trial, and whether that grows with the number of trials.

Runs ``--trials`` trivial trials through ``xdrl tune``'s own path (``tuner.plan`` then
``tuner.run``, the functions the CLI calls, with the CLI's environment): PPO on CartPole, one
iteration of 256 frames each, no evaluation, W&B offline, Optuna (seeded TPE) on the SQLite
study in the experiment directory, ``--concurrent`` trials at a time. The trials do almost no
work, so what is measured is the fixed cost of a trial: worker start or reuse, imports, the
build, W&B's start and finish, the trial's checkpoint and Tune's bookkeeping, the searcher.

Printed, from the driver's clock (a Tune callback):

- total wall time of ``tuner.run`` (Ray start included), and the wall time per trial: overall,
  and as the rate of trial completions in a window around trial 10 and around trial N
  (``--window`` completions wide), so that growth with the number of trials shows;
- the driver's CPU time per trial (this process, all its threads: Tune's loop, result loggers,
  experiment snapshots, the searcher), the searcher's own time per trial (Optuna's ``suggest``,
  ``on_trial_result`` and ``on_trial_complete``, which read and write the SQLite study) and the
  driver's time in Python's garbage collector, in the same windows;
- from the moment Tune schedules a trial to its first report, for trials in a fresh worker process
  and for trials in a reused one (``search.reuse_actors``), in phases: to the worker process's
  start (Ray starting it; 0 for a prestarted idle worker), to the trial function (Ray's worker
  set-up, the imports, the actor; for a reused worker, Tune's reset), to the first report (the
  build, W&B's start, the first iteration);
- the time inside a trial (``trial_info.json``: validation, build, the iteration, W&B finish)
  and how many worker processes served the trials.

Before a goal measurement check that nothing else runs (``uptime``): on 2 cores one other busy
process doubles every number.

    python benchmarks/sweep_scale.py [--trials 200] [--concurrent 2] [--window 10] [--set search.reuse_actors=false]
        [--profile driver.prof]
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import gc
import json
import os
import pathlib
import resource
import shutil
import statistics
import tempfile
import time
import warnings

# The environment `xdrl tune` runs with (xdrl.cli), plus W&B offline and a Ray that starts here.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("RL_WARNINGS", "False")
warnings.filterwarnings("ignore")


def overrides(trials: int, concurrent: int, storage: str, name: str, extra: list[str]) -> list[str]:
    """One iteration of 256 frames per trial, no evaluation; the search metric is the collection reward."""
    return [
        "experiment=cartpole_ppo",
        "search=optuna",
        "collector.total_frames=256",
        "collector.frames_per_batch=256",
        "hooks.eval.interval_frames=0",
        "search.metric=collection/reward/reward_mean",
        "search.scheduler=none",
        f"search.num_samples={trials}",
        f"search.max_concurrent_trials={concurrent}",
        f"search.storage_path={storage}",
        f"search.experiment_name={name}",
        *extra,
    ]


def cpu_seconds() -> float:
    """CPU time of this process so far (every thread: Tune's loop, Ray's client threads, callbacks)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class GarbageClock:
    """Seconds this process spends in the cyclic garbage collector (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start


class SearcherClock:
    """Seconds spent in Optuna's side of the search, timed around Ray's ``OptunaSearch`` methods."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.suggested = 0

    def install(self) -> None:
        from ray.tune.search.optuna import OptunaSearch

        for name in ("suggest", "on_trial_result", "on_trial_complete"):
            setattr(OptunaSearch, name, self._timed(getattr(OptunaSearch, name), name == "suggest"))

    def _timed(self, method, counts: bool):  # noqa: ANN001, ANN202
        clock = self

        def timed(searcher, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            start = time.time()
            try:
                out = method(searcher, *args, **kwargs)
            finally:
                clock.seconds += time.time() - start
            if counts and out is not None:
                clock.suggested += 1
            return out

        return timed


def sweep_clock(searcher: SearcherClock, garbage: GarbageClock):  # noqa: ANN201
    """A Tune callback: when each trial was scheduled, ran, first reported and ended, with the driver's costs."""
    from ray import tune

    class SweepClock(tune.Callback):
        def __init__(self) -> None:
            self.scheduled: dict[str, float] = {}
            self.running: dict[str, float] = {}
            self.first_report: dict[str, float] = {}
            # One entry per ended trial, in order: (time, driver CPU, searcher, driver GC seconds so far).
            self.ended: list[tuple[float, ...]] = []
            self.errored = 0

        def scheduled_now(self, trial_id: str) -> None:
            self.scheduled.setdefault(trial_id, time.time())

        def on_trial_start(self, iteration, trials, trial, **info):  # noqa: ANN001, ANN003
            self.running.setdefault(trial.trial_id, time.time())

        def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001, ANN003
            self.first_report.setdefault(trial.trial_id, time.time())

        def _end(self) -> None:
            self.ended.append((time.time(), cpu_seconds(), searcher.seconds, garbage.seconds))

        def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ANN001, ANN003
            self._end()

        def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001, ANN003
            self.errored += 1
            self._end()

    return SweepClock()


def watch_scheduling(clock) -> bool:  # noqa: ANN001
    """Note when Tune decides to start each trial (before any worker exists for it).

    Tune's callbacks see a trial only once its actor runs, which hides the worker start;
    this wraps the controller's private ``_schedule_trial_actor`` (Ray 2.60), for this
    measurement only. Returns False when Ray no longer has it (then "scheduled" = running).
    """
    from ray.tune.execution.tune_controller import TuneController

    original = getattr(TuneController, "_schedule_trial_actor", None)
    if original is None:
        return False

    def scheduled(controller, trial):  # noqa: ANN001, ANN202
        clock.scheduled_now(trial.trial_id)
        return original(controller, trial)

    TuneController._schedule_trial_actor = scheduled
    return True


def window_rate(ended: list[tuple[float, ...]], low: int, high: int) -> list[float]:
    """Seconds per trial of each clock of ``ended`` between the ``low``-th and the ``high``-th trial end (1-based)."""
    return [(b - a) / (high - low) for a, b in zip(ended[low - 1], ended[high - 1], strict=True)]


def trial_records(experiment_dir: pathlib.Path) -> list[dict]:
    """Each trial's first attempt from its ``trial_info.json``, with its directory name, by start time."""
    records = [
        {**json.loads(info.read_text())[0], "dir": info.parent.name}
        for info in experiment_dir.glob("*/trial_info.json")
    ]
    return sorted(records, key=lambda r: r["started"])


def describe(seconds: list[float]) -> str:
    if not seconds:
        return "-"
    return f"median {statistics.median(seconds):5.2f} s, max {max(seconds):5.2f} s (n={len(seconds)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--window", type=int, default=10, help="trial ends per window (default: %(default)s)")
    parser.add_argument(
        "--storage", default=None, help="where the experiment goes, kept (default: a temp dir, removed at the end)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="another override")
    parser.add_argument(
        "--profile", metavar="FILE", help="cProfile the driver's main thread (Tune's loop) into FILE (python -m pstats)"
    )
    args = parser.parse_args()
    if args.trials < max(10 + args.window // 2, args.window + 1):
        parser.error(f"--trials must be at least {max(10 + args.window // 2, args.window + 1)} for the windows")

    from xdrl.distributed import tuner

    storage = args.storage or tempfile.mkdtemp(prefix="xdrl-sweep-scale-")
    name = f"scale-{args.trials}"
    plan = tuner.plan(overrides(args.trials, args.concurrent, storage, name, args.set))
    searcher = SearcherClock()
    searcher.install()
    clock = sweep_clock(searcher, GarbageClock())
    sees_scheduling = watch_scheduling(clock)
    profile = cProfile.Profile() if args.profile else None
    start = time.time()
    if profile is not None:
        profile.enable()
    grid = tuner.run(plan, callbacks=[clock])
    if profile is not None:
        profile.disable()
        profile.dump_stats(args.profile)
    wall = time.time() - start

    ended = clock.ended
    n = len(ended)
    half = args.window // 2
    early = window_rate(ended, 10 - half, 10 + half)
    late = window_rate(ended, n - args.window, n)
    trial_of_dir = {pathlib.Path(r.path).name: r.metrics.get("trial_id") for r in grid if r.metrics}
    fresh: dict[str, list[float]] = collections.defaultdict(list)
    reused: dict[str, list[float]] = collections.defaultdict(list)
    records = trial_records(plan.experiment_dir)
    for record in records:
        trial_id = trial_of_dir.get(record["dir"])
        if trial_id not in clock.first_report:
            continue
        scheduled = clock.scheduled.get(trial_id, clock.running[trial_id])
        phases = reused if record.get("process_trial", 1) > 1 else fresh
        if phases is fresh and record.get("process_started"):
            # A prestarted idle Ray worker may be older than the trial: its start then costs the trial nothing.
            phases["to process start"].append(max(record["process_started"] - scheduled, 0.0))
            phases["process start -> trial function"].append(
                record["started"] - max(record["process_started"], scheduled)
            )
        else:
            phases["to trial function"].append(record["started"] - scheduled)
        phases["trial function -> first report"].append(clock.first_report[trial_id] - record["started"])
        phases["TOTAL to first report"].append(clock.first_report[trial_id] - scheduled)
    inside = [r["finished"] - r["started"] for r in records if r.get("finished")]
    per_pid = collections.Counter(r["pid"] for r in records)

    print(f"\nsweep: {n} trials ({clock.errored} errored), {args.concurrent} concurrent, {plan.experiment_dir}")
    print(f"search.reuse_actors={str(plan.search.reuse_actors).lower()}; overrides: {' '.join(args.set) or '-'}")
    print(f"total wall                     : {wall:7.1f} s (Ray start included), {wall / n:.2f} s per trial")
    print(f"{'per trial, in the window':31s}: {'trial 10':>9s} {f'trial {n}':>9s} {'ratio':>6s}")
    labels = ("wall (completion rate)", "driver CPU", "searcher (Optuna)", "driver garbage collection")
    for label, a, b in zip(labels, early, late, strict=True):
        print(f"  {label:29s}: {a:8.3f}s {b:8.3f}s {b / a if a else float('nan'):5.2f}x")
    print(f"  (windows: trial ends {10 - half}..{10 + half} and {n - args.window}..{n})")
    since = "Tune scheduled it" if sees_scheduling else "its actor ran"
    for label, phases in (("fresh worker", fresh), ("reused worker", reused)):
        print(f"{label}, from when {since}:")
        for phase, seconds in phases.items():
            print(f"  {phase:29s}: {describe(seconds)}")
    print(f"inside a trial (trial_info)    : {describe(inside)}")
    print(
        f"worker processes               : {len(per_pid)} for {len(records)} trials (most in one: {max(per_pid.values())})"
    )
    if args.storage is None:  # a temp dir of this run's own (100-170 MB for 200 trials); --storage keeps it
        shutil.rmtree(storage, ignore_errors=True)


if __name__ == "__main__":
    main()
