"""``schedule``: values put in force on a real PPO trainer at frame counts, logged, and kept across a resume.

CartPole PPO, 64-frame batches, 8 iterations. The schedule's entries at 0, 100 and 320 frames
apply from the iterations whose batches start at 0, 128 and 320 frames (iterations 1, 3 and 6).
"""

import pytest
import torch

from xdrl import runner
from xdrl.builder.experiment import build
from xdrl.builder.schedule import values_at
from xdrl.cli import main
from xdrl.config import compose_config, validate
from xdrl.records.lineage import read_jsonl

FRAMES = 64
SCHEDULE = (
    "schedule=[{frames:0,values:{algo.lr:0.001}},"
    "{frames:100,values:{algo.lr:0.002,algo.clip_epsilon:0.15}},"
    "{frames:320,values:{algo.entropy_coef:0.02,algo.epochs:2}}]"
)
#: Per iteration (1..8): the values in force (the config's outside the schedule's keys).
CONFIG = {"algo.lr": 3e-4, "algo.clip_epsilon": 0.2, "algo.entropy_coef": 0.0, "algo.epochs": 1}
FIRST = {**CONFIG, "algo.lr": 0.001}
SECOND = {**FIRST, "algo.lr": 0.002, "algo.clip_epsilon": 0.15}
THIRD = {**SECOND, "algo.entropy_coef": 0.02, "algo.epochs": 2}
EXPECTED = [FIRST, FIRST, SECOND, SECOND, SECOND, THIRD, THIRD, THIRD]


def _overrides(tmp_path, *extra):
    return [
        "experiment=cartpole_ppo",
        "logger=none",
        f"collector.frames_per_batch={FRAMES}",
        f"collector.total_frames={FRAMES * 8}",
        "algo.minibatch_size=64",
        # The scheduled clip range itself on the loss (the preset decays it with the frames from the
        # live value, checked in test_live_hyperparameters.py and test_speed_options.py).
        "algo.anneal_clip=false",
        *(f"{key}={value}" for key, value in CONFIG.items()),
        "hooks.eval.interval_frames=0",
        "checkpoint.interval=2",
        "checkpoint.keep=10",
        f"output_dir={tmp_path / 'run'}",
        SCHEDULE,
        *extra,
    ]


def _live(experiment):
    return {f"algo.{key}": value.get() for key, value in experiment.parts.live.items()}


def _assert_rows_follow_the_schedule(rows):
    assert [row["counters/iter"] for row in rows] == list(range(1, 9))
    for row, expected in zip(rows, EXPECTED, strict=True):
        assert row["counters/total_frames"] == FRAMES * row["counters/iter"]
        logged = {key.removeprefix("hparams/"): value for key, value in row.items() if key.startswith("hparams/")}
        assert set(logged) == {"algo.lr", "algo.clip_epsilon", "algo.entropy_coef", "algo.epochs"}
        for key, value in expected.items():
            assert logged[key] == pytest.approx(value, rel=1e-6), (row["counters/iter"], key)
        assert row["train/optim_steps"] == sum(e["algo.epochs"] for e in EXPECTED[: row["counters/iter"]])


def test_scheduled_values_are_in_force_and_logged_at_their_iterations(tmp_path):
    validated, directory = runner.prepare_new_run(_overrides(tmp_path))
    assert validated.config.hooks.hparams == ["algo.lr", "algo.clip_epsilon", "algo.entropy_coef", "algo.epochs"]
    experiment = build(validated, "cpu", output_dir=directory)
    assert _live(experiment)["algo.lr"] == pytest.approx(0.001)  # the frame-0 entry, before the first batch
    seen = []  # what the trainer holds while each iteration trains (its optimisation steps ran with these)
    experiment.trainer.register_op(
        "pre_steps_log",
        lambda _batch: seen.append({k: _live(experiment)[k] for k in CONFIG}),
    )
    experiment.trainer.train()
    rows = read_jsonl(directory / "metrics.jsonl")
    _assert_rows_follow_the_schedule(rows)
    for held, expected in zip(seen, EXPECTED, strict=True):
        assert held == pytest.approx(expected, rel=1e-6)
    # The live objects themselves after the last entry.
    trainer = experiment.trainer
    # cartpole_ppo anneals its rate: the schedule sets the base of the annealing
    assert trainer.optimizer.param_groups[0]["initial_lr"] == pytest.approx(0.002)
    loss = trainer.loss_module
    assert float(loss.clip_epsilon) == pytest.approx(0.15) and float(loss.entropy_coeff) == pytest.approx(0.02)
    assert values_at(validated.config.schedule, 319) == {"algo.lr": 0.002, "algo.clip_epsilon": 0.15}


@pytest.mark.slow
def test_a_resumed_run_keeps_its_schedule(tmp_path):
    """Stopped after iteration 4 (256 frames), then ``xdrl train --resume``: the schedule's values win over the config's."""
    validated, directory = runner.prepare_new_run(_overrides(tmp_path))
    first = build(validated, "cpu", output_dir=directory)

    def stop_after_four(_batch=None):
        if first.router.iteration == 4:
            first.checkpoints.request_stop("interrupted")

    first.trainer.register_op("post_steps", stop_after_four)
    first.trainer.train()
    assert [row["counters/iter"] for row in read_jsonl(directory / "metrics.jsonl")] == [1, 2, 3, 4]

    # What a restore puts in force at 256 frames: the schedule's, not the config's algo values.
    payload, _ = runner.resume_point(directory)
    assert int(payload["iteration"]) == 4
    from xdrl.builder.experiment import restore

    probe = build(runner.load_run_config(directory), "cpu", output_dir=tmp_path / "probe")
    restore(probe, payload)
    assert probe.trainer.collected_frames == 256
    assert _live(probe) == pytest.approx({**_live(probe), **SECOND}, rel=1e-6)
    assert probe.trainer.optimizer.param_groups[0]["initial_lr"] == pytest.approx(0.002)

    assert main(["train", "--resume", str(directory), "--no-progress"]) == 0
    rows = read_jsonl(directory / "metrics.jsonl")
    _assert_rows_follow_the_schedule(rows)
    final, _ = runner.resume_point(directory)
    state = final["trainer"]
    assert state["optimizer"]["param_groups"][0]["initial_lr"] == pytest.approx(0.002)
    assert float(state["loss_module"]["entropy_coeff"]) == pytest.approx(0.02)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (
            "[{frames:128,values:{algo.lr:0.001}},{frames:64,values:{algo.lr:0.002}}]",
            "schedule[1].frames=64 is not accepted: expected more than schedule[0].frames=128 (ascending frames)",
        ),
        (
            "[{frames:0,values:{algo.minibatch_size:32}}]",
            "schedule[0].values.algo.minibatch_size=32 is not accepted: expected keys a live ppo trainer can change",
        ),
        (
            "[{frames:0,values:{collector.frames_per_batch:32}}]",
            "schedule[0].values.collector.frames_per_batch=32 is not accepted",
        ),
        (
            "[{frames:0,values:{algo.lr:0.001}},{frames:64,values:{algo.gamma:1.5}}]",
            "schedule[1].values.algo.gamma=1.5 is not accepted: expected values the config accepts (a number between 0 and 1)",
        ),
        (
            "[{frames:0,values:{algo.epochs:1.5}}]",
            "schedule[0].values.algo.epochs=1.5 is not accepted: expected values the config accepts (an integer)",
        ),
        (
            "[{frames:512,values:{algo.lr:0.001}}]",
            "schedule[0].frames=512 is not accepted: expected fewer than collector.total_frames=512",
        ),
        ("[{frames:0,values:{}}]", "schedule[0].values={} is not accepted: expected a non-empty mapping"),
        ("[{frames:0,lr:1}]", "schedule[0].lr=1 is not accepted: expected one of the keys frames, values"),
    ],
)
def test_a_bad_schedule_stops_before_anything_is_built(tmp_path, capsys, schedule, message):
    overrides = [o for o in _overrides(tmp_path) if not o.startswith("schedule=")]
    assert main(["train", *overrides, f"schedule={schedule}", "--no-progress"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"xdrl: error: {message}") and len(error.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_stored_configs_without_a_schedule_get_the_empty_default():
    from xdrl.config.loading import with_new_defaults

    stored = compose_config(["experiment=cartpole_ppo"])
    del stored["schedule"]
    completed = with_new_defaults(stored)
    assert completed["schedule"] == []
    assert validate(completed).config.schedule == []


def test_the_frame_zero_entry_replaces_the_configs_value_at_build(tmp_path):
    validated = validate(compose_config(_overrides(tmp_path)))
    experiment = build(validated, "cpu", output_dir=tmp_path / "built")
    assert experiment.trainer.optimizer.param_groups[0]["initial_lr"] == pytest.approx(0.001)
    assert isinstance(experiment.trainer.loss_module.clip_epsilon, torch.Tensor)
    assert float(experiment.trainer.loss_module.clip_epsilon) == pytest.approx(0.2)
