"""The metric schema of an experiment: every metric name its hook set can produce, before training.

Used by ``xdrl tune``'s pre-flight check: a search metric that no hook
produces is a typo, and is reported with the list of names that exist.
"""

from __future__ import annotations

from typing import Any

import torch

from xdrl._compat import stage_ops
from xdrl.builder.experiment import build_algorithm, logging_hook_set
from xdrl.config.validation import ValidatedExperiment


def loss_keys(trainer: Any) -> list[str]:
    """Keys of the averaged losses the trainer will pass to the training metrics hook.

    One batch is collected and the loss evaluated on it (no optimiser step);
    TorchRL's optimizer hook adds one ``grad_norm_<i>`` per optimizer op.
    """
    collector = trainer.collector
    try:
        batch = next(iter(collector))
    finally:
        collector.shutdown()
    with torch.no_grad():
        losses = trainer.loss_module(batch.reshape(-1))
    keys = sorted(
        key if isinstance(key, str) else "/".join(key)
        for key, value in losses.items(True, True)
        if isinstance(value, torch.Tensor) and value.numel() == 1
    )
    return keys + [f"grad_norm_{index}" for index in range(len(stage_ops(trainer, "optimizer")))]


def metric_schema(validated: ValidatedExperiment) -> list[str]:
    """Sorted metric names the experiment's hooks can produce: its algorithm built once, no hooks, no training."""
    parts = build_algorithm(validated, "cpu")
    hooks = logging_hook_set(validated, parts.policy, eval_env=None)
    keys = loss_keys(parts.trainer)
    objectives = validated.env_info.objectives
    return sorted(set(hooks.metric_names(keys, objectives=objectives, eval_objectives=1)))
