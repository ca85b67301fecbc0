"""W&B hooks on a real offline W&B run, read back from its run file."""

import logging

import pytest
from torchrl.record.loggers.wandb import WandbLogger

from xdrl.demo import make_ppo_trainer, register_full_hook_set
from xdrl.trainer_hooks import WandbFinishHook, WandbFlushHook
from xdrl.wandb_records import find_run_files, read_run

FRAMES_PER_BATCH = 128


def _trainer(tmp_path, total_frames=512, **hook_kwargs):
    logger = WandbLogger(
        exp_name="hooks", offline=True, save_dir=str(tmp_path), project="xdrl-tests", log_env_packages=False
    )
    trainer = make_ppo_trainer(total_frames=total_frames, frames_per_batch=FRAMES_PER_BATCH, logger=logger)
    register_full_hook_set(trainer, checkpoint_dir=tmp_path / "policies", wandb=True, **hook_kwargs)
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
    trainer, logger = _trainer(tmp_path, eval_interval_frames=2 * FRAMES_PER_BATCH, eval_max_steps=50)
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
    trainer, logger = _trainer(tmp_path)
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
    logger = WandbLogger(
        exp_name="off", offline=True, save_dir=str(tmp_path), project="xdrl-tests", log_env_packages=False
    )
    trainer = make_ppo_trainer(total_frames=256, frames_per_batch=FRAMES_PER_BATCH, logger=logger)
    register_full_hook_set(trainer, checkpoint_dir=tmp_path / "policies", wandb=False)
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
    trainer, logger = _trainer(tmp_path, total_frames=128)
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
    trainer, logger = _trainer(tmp_path, total_frames=128)
    flush = trainer._modules["wandb_flush"]
    trainer.train()
    assert flush.flush() is False  # shutdown already committed the last row
    assert WandbFlushHook._wandb_step_registry(logger) == flush._last_flushed_steps
