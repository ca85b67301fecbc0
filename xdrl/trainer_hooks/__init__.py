"""TorchRL trainer hooks of xdrl: metrics, evaluation, policy checkpoints and W&B.

Every hook follows TorchRL's ``TrainerHookBase`` contract: ``register(trainer)``
picks its stage and default name, ``state_dict``/``load_state_dict`` carry its
progress through a trainer checkpoint. Metric keys are slash paths
(``collection/reward/episode_reward_mean``), identical in every logger.

This package knows TorchRL and tensordict only; W&B is imported lazily.
"""

from xdrl.trainer_hooks.checkpoints import PolicyCheckpointHook
from xdrl.trainer_hooks.collection import LoggingCollectionMetricsHook
from xdrl.trainer_hooks.counters import LoggingCountersHook
from xdrl.trainer_hooks.evaluation import LoggingEvaluationHookSet, LoggingEvaluationMetricsHook
from xdrl.trainer_hooks.hook_set import LoggingHookSet
from xdrl.trainer_hooks.progress import LoggingProgressHook
from xdrl.trainer_hooks.training import LoggingTrainingMetricsHook
from xdrl.trainer_hooks.wandb_hooks import WandbFinishHook, WandbFlushHook

__all__ = [
    "LoggingCollectionMetricsHook",
    "LoggingCountersHook",
    "LoggingEvaluationHookSet",
    "LoggingEvaluationMetricsHook",
    "LoggingHookSet",
    "LoggingProgressHook",
    "LoggingTrainingMetricsHook",
    "PolicyCheckpointHook",
    "WandbFinishHook",
    "WandbFlushHook",
]
