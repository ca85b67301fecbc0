"""The metric schema of an experiment: every metric name its hook set can produce, before training.

Used by ``xdrl tune``'s pre-flight check: a search metric that no hook
produces is a typo, and is reported with the list of names that exist.
"""

from __future__ import annotations

from typing import Any

import torch

from xdrl.builder.experiment import build_algorithm, logging_hook_set
from xdrl.config.validation import ValidatedExperiment


def loss_keys(trainer: Any) -> list[str]:
    """Keys of the averaged losses the trainer will pass to the training metrics hook.

    One batch is collected and the trainer's optimisation stepper takes one step on
    it, so ``trainer`` must be a throw-away one. The keys are what training produces:
    the loss entries and what the stepper adds to them (TorchRL's
    ``DefaultOptimizationStepper``: ``grad_norm``).
    """
    collector = trainer.collector
    try:
        batch = next(iter(collector))
    finally:
        collector.shutdown()
    losses = trainer.optimization_stepper.step(trainer, batch.reshape(-1))
    return sorted(
        key if isinstance(key, str) else "/".join(key)
        for key, value in losses.items(True, True)
        if isinstance(value, torch.Tensor) and value.numel() == 1
    )


def metric_schema(validated: ValidatedExperiment) -> list[str]:
    """Sorted metric names the experiment's hooks can produce: its algorithm built once, no hooks, no training."""
    parts = build_algorithm(validated, "cpu")
    hooks = logging_hook_set(validated, parts.policy, eval_env=None)
    keys = loss_keys(parts.trainer)
    objectives = validated.env_info.objectives
    hparams = [f"hparams/{key}" for key in validated.config.hooks.hparams]
    return sorted(set(hooks.metric_names(keys, objectives=objectives, eval_objectives=1)) | set(hparams))
