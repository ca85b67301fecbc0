"""Reused trial workers (``search.reuse_actors``): one process, several trials, each with only its own records."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tests.distributed.helpers import (
    assert_one_history,
    experiment,
    results,
    started_trial_dirs,
    trial_dirs,
    trial_info,
    wandb_runs,
)
from xdrl.builder.metrics import read_metrics_file
from xdrl.distributed import tuner
from xdrl.distributed.trainable import wandb_run_id
from xdrl.distributed.worker import running_trials

#: A worker process between two trials, without Ray: what the reset leaves and where SIGTERM goes.
BETWEEN_TRIALS = textwrap.dedent(
    """
    import os, signal, time
    from xdrl.builder.checkpointing import PREEMPTED
    from xdrl.distributed import worker

    class Checkpoints:
        def __init__(self):
            self.stopped = []

        def request_stop(self, reason):
            self.stopped.append(reason)

    os.environ["WANDB_MODE"] = "offline"
    worker.install_preemption_handler()
    worker.remember_worker_start()
    assert worker.preemption_handler_armed()
    first, second, announced = Checkpoints(), Checkpoints(), []
    with worker.running_trial(first, lambda: announced.append("first")):
        assert os.getpid() in worker.running_trials()
        # What a trial leaves in the process: TorchRL's WandbLogger sets WANDB_MODE=dryrun for an
        # offline run, W&B publishes its service; something replaced the SIGTERM handler.
        os.environ["WANDB_MODE"] = "dryrun"
        os.environ["XDRL_TEST_LEFTOVER"] = "1"
        os.environ["WANDB_SERVICE"] = "the-service"
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert os.getpid() not in worker.running_trials()
    worker.reset_for_next_trial()
    assert os.environ["WANDB_MODE"] == "offline" and "XDRL_TEST_LEFTOVER" not in os.environ
    assert os.environ["WANDB_SERVICE"] == "the-service"  # the next trials share the service
    assert worker.preemption_handler_armed()
    with worker.running_trial(second, lambda: announced.append("second")):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)  # a second one changes nothing
        time.sleep(0.5)
    assert first.stopped == [] and second.stopped == [PREEMPTED] and announced == ["second"]
    assert worker.count_trial() == 1
    print("between trials: ok", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)  # no trial: the process goes, as Ray would make it
    time.sleep(5)
    """
)

#: Every trial samples the same configuration: trials differ only by the process they run in.
ONE_CONFIGURATION = [
    "search.searcher=random",
    "search.scheduler=none",
    "search.max_concurrent_trials=1",
    "search.space={algo:{lr:{type:choice,values:[0.001]}}}",
]


def in_start_order(experiment_dir):
    return sorted(trial_dirs(experiment_dir), key=lambda d: trial_info(d)[0]["started"])


@pytest.mark.slow
def test_between_two_trials_a_worker_holds_nothing_of_the_first_and_sigterm_reaches_the_second():
    done = subprocess.run([sys.executable, "-c", BETWEEN_TRIALS], capture_output=True, text=True, timeout=120)
    assert "between trials: ok" in done.stdout, done.stderr
    assert done.returncode == -signal.SIGTERM


def deterministic_part(row):
    """A metrics row without what depends on the clock."""
    return {k: v for k, v in row.items() if not k.startswith("timers/") and k != "progress/frames_per_second"}


@pytest.mark.slow
def test_a_reused_worker_runs_trials_one_after_the_other_each_with_its_own_records(local_ray, tmp_path):
    plan = tuner.plan(experiment(tmp_path, "reused", *ONE_CONFIGURATION, "search.num_samples=3"))
    assert plan.search.reuse_actors  # the default
    assert not tuner.run(plan).errors
    trials = in_start_order(tmp_path / "reused")
    attempts = [trial_info(d) for d in trials]
    assert all(len(a) == 1 for a in attempts)
    # One worker process ran the three trials, one after the other.
    assert len({a[0]["pid"] for a in attempts}) == 1, attempts
    assert [a[0]["process_trial"] for a in attempts] == [1, 2, 3]
    rows = []
    for trial_dir in trials:
        trial_id = results(trial_dir)[0]["trial_id"]
        # Its own W&B run (id = its trial id), finished cleanly, with exactly its own iterations.
        (run,) = wandb_runs(trial_dir)
        assert run.run_id == wandb_run_id(trial_id) and run.exit_code == 0 and not run.preempting
        assert trial_dir.name.startswith(f"{run.name}_")  # named after its trial
        rows.append(assert_one_history(trial_dir, 4))  # result.json, progress.csv, metrics.jsonl, W&B
    # A fresh trainer, fresh seeds and the same torch threads in every trial: the reused worker's
    # trials train exactly as the fresh worker's first one did.
    first = [deterministic_part(r) for r in rows[0]]
    for later in rows[1:]:
        assert [deterministic_part(r) for r in later] == first
    assert os.getpid() not in running_trials()
    assert attempts[0][0]["pid"] not in running_trials()  # the registry holds running trials only


@pytest.mark.slow
def test_sigterm_in_a_reused_worker_preempts_the_trial_it_is_running(local_ray, tmp_path):
    plan = tuner.plan(
        experiment(
            tmp_path,
            "preempted",
            *ONE_CONFIGURATION,
            "search.num_samples=2",
            "collector.total_frames=1024",
            "hooks.eval.interval_frames=512",
        )
    )
    signalled = []

    def preempt_the_second_trial_of_the_worker() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not signalled:
            for trial_dir in started_trial_dirs(tmp_path / "preempted"):
                attempt = trial_info(trial_dir)[-1]
                if attempt["process_trial"] == 2 and len(read_metrics_file(trial_dir / "metrics.jsonl")) >= 3:
                    # What `xdrl drain` does: SIGTERM to the pids of the node's registry of running trials.
                    registered = attempt["pid"] in running_trials()
                    os.kill(attempt["pid"], signal.SIGTERM)
                    signalled.append((trial_dir.name, attempt["pid"], registered))
                    return
            time.sleep(0.05)

    watcher = threading.Thread(target=preempt_the_second_trial_of_the_worker)
    watcher.start()
    try:
        grid = tuner.run(plan)
    finally:
        watcher.join()
    assert signalled, "the worker never started a second trial"
    assert not grid.errors
    (preempted_name, pid, registered) = signalled[0]
    assert registered  # the registry pointed at the worker while its second trial trained
    first, second = in_start_order(tmp_path / "preempted")
    assert second.name == preempted_name
    # The first trial, finished earlier in the same process, is untouched by the SIGTERM.
    (first_attempt,) = trial_info(first)
    assert first_attempt["pid"] == pid and first_attempt["process_trial"] == 1
    (first_run,) = wandb_runs(first)
    assert first_run.exit_code == 0 and not first_run.preempting
    assert_one_history(first, 8)
    # The second trial stopped after its iteration, checkpointed, finished its W&B run as preempting,
    # and Tune continued it in a fresh worker from that checkpoint, with one history.
    preempted, retry = trial_info(second)
    assert preempted["pid"] == pid and preempted["process_trial"] == 2
    assert retry["pid"] != pid and retry["process_trial"] == 1 and retry["resumed_after"] >= 3
    runs = wandb_runs(second)
    assert len(runs) == 2 and runs[0].run_id == runs[1].run_id
    stopped = next(r for r in runs if r.preempting)
    assert stopped.finished and len(stopped.history) == retry["resumed_after"]
    assert_one_history(second, 8)
    assert pid not in running_trials()


@pytest.mark.slow
def test_a_trial_the_scheduler_stops_hands_its_worker_on_after_finishing_its_wandb_run(local_ray, tmp_path):
    # Episodes capped at 10 steps return at most 10: ASHA stops such a trial at its first rung, while
    # the third trial is waiting, so Tune gives the stopped trial's worker to the third one.
    plan = tuner.plan(
        experiment(
            tmp_path,
            "stopped",
            "search.searcher=grid",
            "search.num_samples=1",
            "search.max_concurrent_trials=1",
            "search.space={env:{max_episode_steps:{type:choice,values:[80,10,40]}}}",
            "search.metric=collection/reward/episode_reward_mean",
            "collector.total_frames=1024",
        )
    )
    assert not tuner.run(plan).errors
    first, stopped, last = in_start_order(tmp_path / "stopped")
    assert len(results(first)) == 8 and len(results(stopped)) < 8  # stopped by ASHA
    attempts = [trial_info(d) for d in (first, stopped, last)]
    assert all(len(a) == 1 for a in attempts)
    assert len({a[0]["pid"] for a in attempts}) == 1 and [a[0]["process_trial"] for a in attempts] == [1, 2, 3]
    for trial_dir in (first, stopped, last):
        (run,) = wandb_runs(trial_dir)
        # Finished (the stopped one too, before the next trial started in its process), with its own rows.
        assert run.exit_code == 0
        assert [h["counters/iter"] for h in run.history] == [r["counters/iter"] for r in results(trial_dir)]
    assert trial_info(stopped)[0]["finished"] <= trial_info(last)[0]["started"]
