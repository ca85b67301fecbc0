"""W&B hooks on a real offline W&B run, read back from its run file.

Two constructions: ``build()`` with ``logger=wandb`` (what ``xdrl train`` and every Tune
trial run: the W&B logger behind the metric router), and the library's own use, the
hooks registered on the builder's TorchRL trainer whose logger is TorchRL's ``WandbLogger``.
"""

import logging

import pytest
from torchrl.record.loggers.wandb import WandbLogger

from tests.trainer_hooks.helpers import algorithm, cartpole_ppo, validated
from xdrl.builder.experiment import build
from xdrl.records.wandb_files import find_run_files, read_run
from xdrl.trainer_hooks import LoggingHookSet, PolicyCheckpointHook, WandbFinishHook, WandbFlushHook

FRAMES_PER_BATCH = 128


def _built(tmp_path, total_frames=512, eval_interval_frames=0):
    """``build()`` with an offline W&B run in ``tmp_path``: the trainer and its ``WandbLogger``."""
    overrides = cartpole_ppo(
        total_frames,
        FRAMES_PER_BATCH,
        "logger.project=xdrl-tests",
        f"hooks.eval.interval_frames={eval_interval_frames}",
        "hooks.eval.max_steps=50",
        logger="wandb",
    )
    experiment = build(validated(overrides), "cpu", output_dir=tmp_path)
    return experiment.trainer, experiment.router.named_loggers["wandb"]


def _hooked(tmp_path, total_frames=512, *, exp_name="hooks", wandb_hooks=True):
    """The builder's TorchRL trainer logging to a ``WandbLogger``, the hook set registered on it by hand."""
    logger = WandbLogger(
        exp_name=exp_name, offline=True, save_dir=str(tmp_path), project="xdrl-tests", log_env_packages=False
    )
    parts = algorithm(cartpole_ppo(total_frames, FRAMES_PER_BATCH), logger=logger)
    trainer = parts.trainer
    LoggingHookSet(
        group="agents",
        frame_skip=1,
        reward_key=("next", "reward"),
        episode_reward_key=("next", "episode_reward"),
        reduce_stats=True,
    ).register(trainer)
    PolicyCheckpointHook(directory=tmp_path / "policies", interval=2, policy_path=parts.policy_path).register(trainer)
    if wandb_hooks:
        WandbFlushHook().register(trainer)  # after the metric hooks: it commits the iteration's row
        WandbFinishHook().register(trainer)
    return trainer, logger


def _records(tmp_path, logger, timeout=15.0):
    """The run file read back; for a finished run, once W&B's service has written its exit record."""
    import time

    files = find_run_files(tmp_path, logger.experiment.id)
    assert len(files) == 1
    deadline = time.monotonic() + timeout
    records = read_run(files[0])
    while logger.experiment._is_finished and not records.finished and time.monotonic() < deadline:
        time.sleep(0.1)  # run.finish() returns when the service has the exit; it reaches the file just after
        records = read_run(files[0])
    return records


def test_one_row_per_iteration_with_every_metric(tmp_path):
    trainer, logger = _built(tmp_path, eval_interval_frames=2 * FRAMES_PER_BATCH)
    steps = []
    trainer.register_op("post_steps_log", lambda _batch: steps.append(logger.experiment.step))
    trainer.train()
    # The run's step advanced once per iteration, during the run (rows appear while it goes).
    assert steps == [1, 2, 3, 4]
    records = _records(tmp_path, logger)
    assert records.finished and records.exit_code == 0
    assert records.project == "xdrl-tests"
    assert len(records.history) == 4
    for index, row in enumerate(records.history):
        frames = FRAMES_PER_BATCH * (index + 1)
        assert row["counters/total_frames"] == frames
        assert row["counters/iter"] == index + 1
        assert row["collection/reward/reward_mean"] == 1.0
        for key in ("train/agents/loss_objective", "timers/iteration_time", "progress/frames_fraction"):
            assert key in row
        # TorchRL's WandbLogger adds a step per namespace: frames everywhere.
        assert row["counters/step"] == row["train/agents/step"] == frames
        has_eval = "eval/deterministic/reward/episode_reward_mean" in row
        assert has_eval == (index % 2 == 1)


@pytest.mark.parametrize(
    ("error", "exit_code"), [(RuntimeError("boom"), 1), (SystemExit(0), 0), (KeyboardInterrupt(), 1)]
)
def test_run_is_finished_and_flushed_when_training_raises(tmp_path, error, exit_code):
    # The hooks log straight to the WandbLogger here: build()'s metric router keeps a failed iteration out of W&B.
    trainer, logger = _hooked(tmp_path)
    calls = []

    def fail_in_second_iteration():
        calls.append(1)
        if len(calls) == 2:
            raise error

    trainer.register_op("post_steps", fail_in_second_iteration)
    with pytest.raises(type(error)):
        trainer.train()
    assert logger.experiment._is_finished
    records = _records(tmp_path, logger)
    assert records.exit_code == exit_code
    # Iteration 2 failed after its collection metrics were logged: the shutdown flush kept them.
    assert [row["counters/iter"] for row in records.history] == [1, 2]
    assert "train/agents/loss_objective" in records.history[1]


def test_disabled_hooks_do_nothing(tmp_path):
    trainer, logger = _hooked(tmp_path, 256, exp_name="off", wandb_hooks=False)
    flush, finish = WandbFlushHook(enabled=False), WandbFinishHook(enabled=False)
    flush.register(trainer)
    finish.register(trainer)
    trainer.train()
    assert not flush.flush()
    assert not logger.experiment._is_finished
    # Disabled flushing leaves TorchRL's one-row-per-scalar behaviour untouched.
    assert logger.experiment.step > 2
    logger.experiment.finish()


def test_error_while_finishing_is_a_warning(tmp_path, caplog, monkeypatch):
    trainer, logger = _built(tmp_path, total_frames=128)
    run = logger.experiment

    def failing_finish(*args, **kwargs):
        raise RuntimeError("network is down")

    monkeypatch.setattr(run, "finish", failing_finish)
    with caplog.at_level(logging.WARNING):
        trainer.train()  # shutdown goes on
    assert "finishing the W&B run failed" in caplog.text and "network is down" in caplog.text
    monkeypatch.undo()
    run.finish()


def test_flush_skips_when_nothing_is_pending(tmp_path):
    trainer, logger = _built(tmp_path, total_frames=128)
    flush = trainer._modules["wandb_flush"]
    trainer.train()
    assert flush.flush() is False  # shutdown already committed the last row
    assert WandbFlushHook._wandb_step_registry(logger) == flush._last_flushed_steps
