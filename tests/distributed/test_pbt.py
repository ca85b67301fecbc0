"""Population-based training on a local Ray: exploits apply the member's new values, one history per member.

The search metric is the learning rate in force (``hparams/algo.lr``, mode max): the member
with the highest rate is the best, so the others exploit it at every boundary they reach in
the bottom quantile, and every exploit is checked.
"""

import json
import pathlib

import pytest

from tests.distributed.helpers import progress, results, trial_dirs, wandb_runs
from xdrl.builder.checkpointing import load_checkpoint
from xdrl.distributed import tuner
from xdrl.distributed.trainable import trial_index
from xdrl.records.lineage import read_jsonl

pytestmark = pytest.mark.slow

FRAMES = 64
ITERATIONS = 12


def _population(tmp_path, name, preset, search, *extra):
    return tuner.plan(
        [
            f"experiment={preset}",
            f"search={search}",
            "search.num_samples=4",
            "search.max_concurrent_trials=4",
            "search.metric=hparams/algo.lr",
            "search.mode=max",
            "search.pbt.perturbation_interval=2",
            "checkpoint.interval=2",
            f"collector.frames_per_batch={FRAMES}",
            f"collector.total_frames={FRAMES * ITERATIONS}",
            "hooks.eval.interval_frames=0",
            "hooks.policy_checkpoint.interval=4",
            f"search.storage_path={tmp_path}",
            f"search.experiment_name={name}",
            *extra,
        ]
    )


def _member_checkpoints(trial_dir: pathlib.Path) -> dict[int, pathlib.Path]:
    """The member's own Tune checkpoints, by the iteration of its clock they were saved at."""
    own = {}
    for directory in trial_dir.glob("checkpoint_*"):
        origin = json.loads((directory / "origin.json").read_text())
        if trial_dir.name.startswith(f"run_trial_{origin['trial_id']}"):
            own[origin["iteration"]] = directory / "trainer.pt"
    return own


def _assert_member(trial_dir: pathlib.Path) -> tuple[list[dict], list[dict], int]:
    """One history per member: every record holds 1..N once, the same numbers; each exploit in force.

    Returns the member's ``metrics.jsonl`` rows, its exploit events, and how many of them were
    also checked in the trainer state of a later checkpoint.
    """
    rows = read_jsonl(trial_dir / "metrics.jsonl")
    count = len(rows)
    expected = list(range(1, count + 1))
    assert count == ITERATIONS  # a member's budget is its own iterations, whichever donors it took
    assert [r["counters/iter"] for r in rows] == expected, "metrics.jsonl"
    reported = results(trial_dir)
    assert [r["training_iteration"] for r in reported] == expected, "result.json"
    assert [int(r["training_iteration"]) for r in progress(trial_dir)] == expected, "progress.csv"
    wandb_rows = [h for run in wandb_runs(trial_dir) for h in run.history]
    assert [h["counters/iter"] for h in wandb_rows] == expected, "W&B"
    assert all(run.finished for run in wandb_runs(trial_dir))
    for row, report, history in zip(rows, reported, wandb_rows, strict=True):
        assert {k: report[k] for k in row} == row
        assert {k: history[k] for k in row} == row

    events = read_jsonl(trial_dir / "pbt_events.jsonl") if (trial_dir / "pbt_events.jsonl").exists() else []
    exploit_rows = [r for r in rows if "pbt/donor" in r]
    # An exploit at the member's last boundary has no row after it only if its budget was spent.
    assert len(exploit_rows) == len(events)
    by_iteration = {r["counters/iter"]: r for r in rows}
    own_checkpoints = _member_checkpoints(trial_dir)
    checked = 0
    for event, row in zip(events, exploit_rows, strict=True):
        assert row["counters/iter"] == event["iteration"] + 1  # the member's clock goes on
        assert row["pbt/donor"] == trial_index(event["donor"]) and row["pbt/generation"] == event["generation"]
        assert row["pbt/donor_iteration"] == event["donor_iteration"]
        assert event["donor"] not in trial_dir.name
        # Frames continue from the donor's checkpoint.
        assert row["counters/total_frames"] == event["donor_frames"] + FRAMES == event["frames"] + FRAMES
        # The member trains with its new values, which are not the donor's: as logged ...
        for key, value in event["hparams"].items():
            assert row[key] == pytest.approx(value)
        assert row["hparams/algo.lr"] != pytest.approx(event["donor_hparams"]["hparams/algo.lr"])
        # ... and as the trainer holds them: its next own checkpoint after the exploit.
        next_exploit = min((e["iteration"] for e in events if e["iteration"] > event["iteration"]), default=count)
        after = min(i for i in own_checkpoints if i > event["iteration"])
        if after <= next_exploit:  # saved before the member's next exploit: this exploit's values
            state = load_checkpoint(own_checkpoints[after])["trainer"]
            group = state["optimizer"]["param_groups"][0]
            checked += 1
            assert group["initial_lr"] == pytest.approx(event["hparams"]["hparams/algo.lr"])
            if "hparams/algo.clip_epsilon" in event["hparams"]:
                clip = float(state["loss_module"]["clip_epsilon"])
                assert clip == pytest.approx(event["hparams"]["hparams/algo.clip_epsilon"], rel=1e-6)
    # Between exploits the values stay those in force.
    for row in rows:
        previous = by_iteration.get(row["counters/iter"] - 1)
        if previous is not None and "pbt/donor" not in row:
            assert row["hparams/algo.lr"] == previous["hparams/algo.lr"]
            assert row["counters/total_frames"] == previous["counters/total_frames"] + FRAMES
    return rows, events, checked


def test_pbt_members_train_with_their_explored_values_and_keep_one_history(local_ray, tmp_path):
    # A constant clip range, so that the one in a checkpoint is the explored value itself (with the
    # preset's decay the live value is the decay's start: test_live_hyperparameters.py).
    plan = _population(
        tmp_path, "pbt", "cartpole_ppo", "pbt", "algo.minibatch_size=64", "algo.epochs=1", "algo.anneal_clip=false"
    )
    assert not tuner.run(plan).errors
    members = trial_dirs(tmp_path / "pbt")
    assert len(members) == 4
    checked = [_assert_member(member) for member in members]
    events = [event for _, member_events, _ in checked for event in member_events]
    assert events, "the learning-rate metric forces exploits"
    assert sum(count for *_, count in checked) > 0, "no exploit was checked in a trainer checkpoint"
    assert all(event["generation"] >= 1 and event["checkpoint_bytes"] > 0 for event in events)


def test_pb2_off_policy_members_keep_their_own_replay_buffer(local_ray, tmp_path):
    plan = _population(
        tmp_path,
        "pb2",
        "cartpole_dqn",
        "pb2",
        "collector.init_random_frames=64",
        "algo.optim_steps_per_batch=4",
        "algo.batch_size=32",
        "search.pbt.copy_replay_buffer=false",
        "logger=csv",
    )
    assert not tuner.run(plan).errors
    members = trial_dirs(tmp_path / "pb2")
    events = []
    for member in members:
        rows = read_jsonl(member / "metrics.jsonl")
        assert [r["counters/iter"] for r in rows] == list(range(1, len(rows) + 1))
        assert [r["training_iteration"] for r in results(member)] == [r["counters/iter"] for r in rows]
        exploit_rows = [r for r in rows if "pbt/donor" in r]
        member_events = read_jsonl(member / "pbt_events.jsonl") if (member / "pbt_events.jsonl").exists() else []
        assert len(member_events) == len(exploit_rows)
        for event, row in zip(member_events, exploit_rows, strict=True):
            assert event["replay_buffer"] == "own"
            assert row["counters/total_frames"] == event["donor_frames"] + FRAMES
            for key, value in event["hparams"].items():
                assert row[key] == pytest.approx(value)
            # PB2's values stay inside the bounds of search.pbt.mutations.
            assert 1e-4 <= row["hparams/algo.lr"] <= 3e-3 and 0.95 <= row["hparams/algo.gamma"] <= 0.995
        events += member_events
    assert events, "the learning-rate metric forces exploits"
