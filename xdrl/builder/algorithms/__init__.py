"""The algorithm registry: one entry per algorithm, looped over by config loading, building and tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from xdrl.builder.algorithms import dqn, ppo, sac
from xdrl.builder.algorithms.common import AlgorithmParts, BuildContext


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """How to validate and build one algorithm."""

    config_cls: type
    build: Callable[[Any, BuildContext], AlgorithmParts]
    #: Modules a policy checkpoint may point at (``hooks.policy_checkpoint.policy_path``).
    policy_paths: tuple[str, ...]
    #: Action spaces it handles: ``discrete`` and/or ``box``.
    action_spaces: tuple[str, ...]
    #: Whether it learns from a replay buffer (``collector.init_random_frames`` applies).
    off_policy: bool


ALGORITHMS: dict[str, Algorithm] = {
    "ppo": Algorithm(
        ppo.PPOConfig,
        ppo.build,
        ("loss_module.actor_network", "loss_module.critic_network"),
        ("discrete", "box"),
        off_policy=False,
    ),
    "dqn": Algorithm(dqn.DQNConfig, dqn.build, ("loss_module.value_network",), ("discrete",), off_policy=True),
    "sac": Algorithm(
        sac.SACConfig,
        sac.build,
        ("loss_module.actor_network", "loss_module.qvalue_network"),
        ("box",),
        off_policy=True,
    ),
}

__all__ = ["ALGORITHMS", "Algorithm", "AlgorithmParts", "BuildContext"]
