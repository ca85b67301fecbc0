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
    "hooks.eval.episodes=2",
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


def started_trial_dirs(experiment_dir: pathlib.Path) -> list[pathlib.Path]:
    """Directories of the trials that started, while the experiment runs.

    A trial writes its ``trial_info.json`` when it starts; Tune's own files (``params.json``,
    ``result.json``) reach the experiment directory only with the driver's next sync.
    """
    if not experiment_dir.exists():
        return []
    return sorted(p for p in experiment_dir.iterdir() if (p / "trial_info.json").exists())


def results(trial_dir: pathlib.Path) -> list[dict]:
    path = trial_dir / "result.json"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def progress(trial_dir: pathlib.Path) -> list[dict]:
    """Tune's ``progress.csv`` rows (strings, as the CSV has them)."""
    import csv

    path = trial_dir / "progress.csv"
    return list(csv.DictReader(path.open())) if path.exists() else []


def wandb_runs(trial_dir: pathlib.Path) -> list:
    """The W&B runs of a trial (every attempt's run directory), read back from their run files."""
    from xdrl.records.wandb_files import find_run_files, read_run

    runs = [read_run(p) for p in find_run_files(trial_dir / "wandb")]
    # A SIGKILL can leave a run file that W&B never got to write (header only): nothing to sync there.
    return [r for r in runs if r.run_id is not None or r.history]


REWARD = "collection/reward/reward_mean"
EVAL = "eval/deterministic/reward/episode_reward_mean"


def assert_one_history(trial_dir: pathlib.Path, iterations: int, frames_per_iteration: int = 128) -> list[dict]:
    """Every record of a trial holds iterations 1..N exactly once, in order, with the same numbers.

    Checked: Tune's ``result.json`` and ``progress.csv``, the trial's ``metrics.jsonl``, the rows of all
    its W&B run files, and the Optuna study's intermediate values (when the experiment has a study
    with one trial). Returns the ``metrics.jsonl`` rows.
    """
    from xdrl.builder.metrics import read_metrics_file

    expected = list(range(1, iterations + 1))
    rows = read_metrics_file(trial_dir / "metrics.jsonl")
    assert [r["counters/iter"] for r in rows] == expected, "metrics.jsonl"
    assert [r["counters/total_frames"] for r in rows] == [frames_per_iteration * i for i in expected]
    reported = results(trial_dir)
    assert [r["training_iteration"] for r in reported] == expected, "result.json"
    csv_rows = progress(trial_dir)
    assert [int(r["training_iteration"]) for r in csv_rows] == expected, "progress.csv"
    wandb_rows = [h for run in wandb_runs(trial_dir) for h in run.history]
    assert [h["counters/iter"] for h in wandb_rows] == expected, "W&B"
    latest = {}
    for row, report, csv_row, history in zip(rows, reported, csv_rows, wandb_rows, strict=True):
        assert {k: report[k] for k in row} == row  # Tune got the row of metrics.jsonl, number for number
        assert {k: history[k] for k in row} == row  # and so did W&B
        assert float(csv_row[REWARD]) == row[REWARD]
        latest.update(row)
        assert {k: report[k] for k in latest} == latest  # carried forward: the last value of every metric
    database = trial_dir.parent / "optuna.db"
    if database.exists():
        import optuna

        (study_name,) = optuna.get_all_study_names(f"sqlite:///{database}")
        study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{database}")
        if len(study.trials) == 1:
            assert study.trials[0].intermediate_values == {
                r["training_iteration"]: r[EVAL] for r in reported if EVAL in r
            }, "Optuna"
    return rows


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
    from xdrl.report.tune_state import tune_state

    try:
        trials = tune_state(experiment_dir)
    except json.JSONDecodeError:  # Tune is writing it right now
        return {}
    return {trial["dirname"]: trial["status"] for trial in trials.values()}
