import torch
from tensordict import TensorDict

from tests.trainer_hooks.helpers import algorithm, cartpole_ppo
from xdrl.trainer_hooks import LoggingProgressHook, LoggingTrainingMetricsHook


def test_training_metrics_flatten_nested_scalar_losses_only():
    losses = TensorDict(
        {"loss_actor": torch.tensor(1.5), "aux": {"alpha": torch.tensor(0.1)}, "per_dim": torch.ones(3)}, []
    )
    metrics = LoggingTrainingMetricsHook(group="g")(7, losses)
    assert metrics == {"train/g/loss_actor": 1.5, "train/g/aux/alpha": torch.tensor(0.1).item(), "train/optim_steps": 7}
    assert LoggingTrainingMetricsHook()(3, None) == {"train/optim_steps": 3}


def test_progress_reports_fraction_and_fps_on_a_trainer():
    trainer = algorithm(cartpole_ppo(512, 128)).trainer
    hook = LoggingProgressHook()
    hook.register(trainer)
    trainer.train()
    fractions = trainer._log_dict["progress/frames_fraction"]
    assert fractions == [0.25, 0.5, 0.75, 1.0]
    assert all(fps > 0 for fps in trainer._log_dict["progress/frames_per_second"])
