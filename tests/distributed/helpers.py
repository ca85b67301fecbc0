"""Tiny Tune experiments for the tests."""

from __future__ import annotations

import contextlib
import json
import pathlib
import threading
import time

#: A 4-iteration PPO run (128 frames each) with evaluation every 2 iterations, for any PPO preset.
TINY_PPO_BUDGET = [
    "env.num_envs=1",
    "collector.frames_per_batch=128",
    "collector.total_frames=512",
    "algo.minibatch_size=64",
    "algo.epochs=2",
    "hooks.eval.interval_frames=256",
    "hooks.eval.max_steps=50",
    "search.spaces.ppo.algo.epochs.high=6",
]

#: The tiny budget on CartPole with Optuna, checkpoints every 2 iterations.
TINY_PPO = [
    "experiment=cartpole_ppo",
    "search=optuna",
    *TINY_PPO_BUDGET,
    "checkpoint.interval=2",
    "search.asha.grace_period=1",
]


def experiment(tmp_path: pathlib.Path, name: str, *extra: str) -> list[str]:
    return [*TINY_PPO, f"search.storage_path={tmp_path}", f"search.experiment_name={name}", *extra]


def trial_dirs(experiment_dir: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in experiment_dir.iterdir() if p.is_dir() and (p / "params.json").exists())


def results(trial_dir: pathlib.Path) -> list[dict]:
    path = trial_dir / "result.json"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def trial_info(trial_dir: pathlib.Path) -> list[dict]:
    return json.loads((trial_dir / "trial_info.json").read_text())


def has_checkpoint(trial_dir: pathlib.Path) -> bool:
    return any(trial_dir.glob("checkpoint_*"))


def iterations_at_least(count: int):
    from xdrl.builder.metrics import read_metrics_file

    return lambda trial_dir: len(read_metrics_file(trial_dir / "metrics.jsonl")) >= count


def tune_holds_checkpoint(trial_dir: pathlib.Path) -> bool:
    """Tune has registered the trial's first checkpoint (iteration 2 with ``checkpoint.interval=2``).

    A checkpoint directory in storage is not enough: Tune registers a reported
    checkpoint with a separate save task, and a trial lost before that restarts
    without it. Reports are synchronous and Tune asks for the next result only
    after the save is processed, so the trial writing its row 3 means Tune holds
    the checkpoint of iteration 2.
    """
    return has_checkpoint(trial_dir) and iterations_at_least(3)(trial_dir)


@contextlib.contextmanager
def when_first_trial(experiment_dir: pathlib.Path, ready, act, timeout: float = 300.0):
    """While the body runs an experiment, call ``act(trial_dir)`` once its first trial is ``ready``.

    Yields the list that receives what ``act`` returned (empty if the moment never came).
    """
    outcome: list = []

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dirs = trial_dirs(experiment_dir) if experiment_dir.exists() else []
            if dirs and (dirs[0] / "trial_info.json").exists() and ready(dirs[0]):
                outcome.append(act(dirs[0]))
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        yield outcome
    finally:
        thread.join()


def persisted_statuses(experiment_dir: pathlib.Path) -> dict[str, str]:
    """Trial directory name -> status, as Tune's newest saved experiment state has it (what a resume sees)."""
    from xdrl.report.data import tune_state

    try:
        trials = tune_state(experiment_dir)
    except json.JSONDecodeError:  # Tune is writing it right now
        return {}
    return {trial["dirname"]: trial["status"] for trial in trials.values()}
