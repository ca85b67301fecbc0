"""The guard that runs TorchRL's shutdown stage when train() raises."""

import pytest

from tests.trainer_hooks.helpers import algorithm, cartpole_ppo
from xdrl.trainer_hooks.shutdown import ensure_shutdown_on_error, train_error


def _trainer_with_log():
    trainer = algorithm(cartpole_ppo(256, 128)).trainer
    calls = []
    trainer.register_op("shutdown", lambda: calls.append("shutdown"))
    ensure_shutdown_on_error(trainer)
    ensure_shutdown_on_error(trainer)  # idempotent
    return trainer, calls


def test_shutdown_runs_once_after_normal_end():
    trainer, calls = _trainer_with_log()
    trainer.train()
    assert calls == ["shutdown"]
    assert train_error(trainer) is None


def test_shutdown_runs_once_when_training_raises_and_error_is_kept():
    trainer, calls = _trainer_with_log()
    error = RuntimeError("collector died")

    def fail():
        raise error

    trainer.register_op("post_steps", fail)
    with pytest.raises(RuntimeError, match="collector died"):
        trainer.train()
    assert calls == ["shutdown"]
    assert train_error(trainer) is error


def test_failing_shutdown_op_does_not_hide_the_training_error(caplog):
    trainer, calls = _trainer_with_log()

    def broken_shutdown():
        raise ValueError("second problem")

    trainer.register_op("shutdown", broken_shutdown)
    trainer.register_op("post_steps", lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert calls == ["shutdown"]
    assert "second problem" in caplog.text
