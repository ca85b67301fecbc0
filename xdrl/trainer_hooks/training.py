"""Loss metrics of an optimisation round (``train/`` namespace)."""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.trainers.trainers import Trainer, TrainerHookBase


class LoggingTrainingMetricsHook(TrainerHookBase):
    """Log the losses averaged over one optimisation round under ``train/<group>/``.

    Stage: ``post_optim_complete_log``: TorchRL calls it once per collected batch
    with the optimiser step count and the averaged loss TensorDict.

    Metrics: ``train/<group>/<loss key>`` for every scalar entry of the averaged
    losses (nested keys joined with ``/``) and ``train/optim_steps``.

    Args:
        group: agent group used in the metric names.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> hook = LoggingTrainingMetricsHook(group="agents")
        >>> hook(12, TensorDict({"loss_objective": torch.tensor(0.5)}, []))
        {'train/agents/loss_objective': 0.5, 'train/optim_steps': 12}
    """

    def __init__(self, group: str = "agents") -> None:
        self.group = group

    def __call__(self, optim_steps: int, average_losses: TensorDictBase | None) -> dict[str, float]:
        metrics: dict[str, Any] = {}
        if average_losses is not None:
            for key, value in average_losses.items(True, True):
                if not isinstance(value, torch.Tensor) or value.numel() != 1:
                    continue
                name = key if isinstance(key, str) else "/".join(key)
                metrics[f"train/{self.group}/{name}"] = value.detach().float().item()
        metrics["train/optim_steps"] = int(optim_steps)
        return metrics

    def metric_names(self, loss_keys: list[str]) -> list[str]:
        """Every key this hook returns when the averaged losses hold ``loss_keys``."""
        return [f"train/{self.group}/{key}" for key in loss_keys] + ["train/optim_steps"]

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        del state_dict

    def register(self, trainer: Trainer, name: str = "logging_training_metrics") -> None:
        """Register at ``post_optim_complete_log`` under ``name``."""
        trainer.register_module(name, self)
        trainer.register_op("post_optim_complete_log", self)
