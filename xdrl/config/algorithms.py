"""The algorithms' configs and what validation knows of each, before anything is built.

One entry per algorithm in :data:`ALGORITHMS`: its typed config (``configs/algo/<name>.yaml``
holds the defaults), the action spaces it handles, the modules a policy checkpoint may point
at, and whether it learns off-policy. The builder pairs each entry with its build function
(:data:`xdrl.builder.algorithms.BUILDERS`); a test keeps the two registries in step.
"""

from __future__ import annotations

import dataclasses

#: Activation functions of the networks (``algo.activation``), by name.
ACTIVATIONS = ("tanh", "relu", "elu")


#: ``algo.critic_loss``: TorchRL's names of the critic's regression losses.
CRITIC_LOSSES = ("l2", "smooth_l1", "l1")


@dataclasses.dataclass
class PPOConfig:
    """``configs/algo/ppo.yaml`` holds the defaults."""

    name: str
    lr: float
    #: Decay the learning rate linearly to 0 over the run.
    anneal_lr: bool
    gamma: float
    gae_lambda: float
    clip_epsilon: float
    entropy_coef: float
    critic_coef: float
    #: Passes over each collected batch.
    epochs: int
    minibatch_size: int
    max_grad_norm: float
    hidden_sizes: list[int]
    activation: str
    #: Advantages again before every epoch (TorchRL's PPOTrainer) rather than once per batch (SB3, CleanRL).
    recompute_advantages: bool
    #: The critic's regression loss: l2 (SB3, CleanRL), smooth_l1 (TorchRL's default) or l1.
    critic_loss: str
    #: Decay the clip range linearly to 0 over the run (RL Zoo3's ``lin_`` clip ranges).
    anneal_clip: bool
    #: Orthogonal initial weights (SB3's PPO) rather than torch's default initialisation.
    ortho_init: bool


@dataclasses.dataclass
class DQNConfig:
    """``configs/algo/dqn.yaml`` holds the defaults."""

    name: str
    lr: float
    #: Decay the learning rate linearly over the run (steadier final policy).
    anneal_lr: bool
    gamma: float
    batch_size: int
    buffer_size: int
    #: Gradient steps per collected batch.
    optim_steps_per_batch: int
    #: Gradient steps between two copies of the online network into the target.
    target_update_interval: int
    eps_init: float
    eps_end: float
    #: Fraction of the run over which epsilon decays from eps_init to eps_end.
    exploration_fraction: float
    double_dqn: bool
    max_grad_norm: float
    hidden_sizes: list[int]
    activation: str


@dataclasses.dataclass
class SACConfig:
    """``configs/algo/sac.yaml`` holds the defaults."""

    name: str
    lr: float
    gamma: float
    #: Soft target update rate.
    tau: float
    batch_size: int
    buffer_size: int
    #: Gradient steps per collected batch (equal to frames_per_batch: one update per frame).
    optim_steps_per_batch: int
    alpha_init: float
    max_grad_norm: float
    hidden_sizes: list[int]
    activation: str


@dataclasses.dataclass(frozen=True)
class AlgorithmSpec:
    """What validation knows of one algorithm."""

    config_cls: type
    #: Modules a policy checkpoint may point at (``hooks.policy_checkpoint.policy_path``).
    policy_paths: tuple[str, ...]
    #: Action spaces it handles: ``discrete`` and/or ``box``.
    action_spaces: tuple[str, ...]
    #: Whether it learns from a replay buffer (``collector.init_random_frames`` applies).
    off_policy: bool


ALGORITHMS: dict[str, AlgorithmSpec] = {
    "ppo": AlgorithmSpec(
        PPOConfig,
        ("loss_module.actor_network", "loss_module.critic_network"),
        ("discrete", "box"),
        off_policy=False,
    ),
    "dqn": AlgorithmSpec(DQNConfig, ("loss_module.value_network",), ("discrete",), off_policy=True),
    "sac": AlgorithmSpec(
        SACConfig,
        ("loss_module.actor_network", "loss_module.qvalue_network"),
        ("box",),
        off_policy=True,
    ),
}
