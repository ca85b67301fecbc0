"""The metric schema of an experiment: every metric name its hook set can produce, before training.

Used by ``xdrl tune``'s pre-flight check: a search metric that no hook
produces is a typo, and is reported with the list of names that exist.
"""

from __future__ import annotations

import tempfile

import torch

from xdrl._compat import stage_ops
from xdrl.builder.experiment import build
from xdrl.config.validation import ValidatedExperiment


def loss_keys(experiment: object) -> list[str]:
    """Keys of the averaged losses the trainer will pass to the training metrics hook.

    One batch is collected and the loss evaluated on it (no optimiser step);
    TorchRL's optimizer hook adds one ``grad_norm_<i>`` per optimizer op.
    """
    trainer = experiment.trainer
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
    """Sorted metric names the experiment's hooks can produce (a throw-away build, no training)."""
    config = validated.config
    quiet = type(config.logger)(**{**config.logger.__dict__, "backend": "none"})
    offline = ValidatedExperiment(
        config=type(config)(**{**config.__dict__, "logger": quiet}), algo=validated.algo, env_info=validated.env_info
    )
    with tempfile.TemporaryDirectory(prefix="xdrl-schema-") as directory:
        experiment = build(offline, "cpu", output_dir=directory)
        keys = loss_keys(experiment)
        eval_set = experiment.hooks.eval_hook_set
        if eval_set is not None:
            eval_set.close()
    objectives = validated.env_info.objectives
    return sorted(set(experiment.hooks.metric_names(keys, objectives=objectives, eval_objectives=1)))
