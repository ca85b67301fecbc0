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
    #: The entropy the temperature is tuned towards; null: TorchRL's ``auto`` (minus the action dimension).
    target_entropy: float | None
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
    #: The ``algo.*`` keys a live trainer takes a new value of (population-based training), with
    #: where the value goes; the builder applies each to the live objects after a restore.
    live_keys: dict[str, str] = dataclasses.field(default_factory=dict)


_LR = "the optimizer's learning rate (its param_groups, and the annealing schedule's base)"
_GRAD = "the trainer's gradient-norm clip"
_TD = "the TD target's discount"
_STEPS = "the trainer's gradient steps per batch"
_EXPLORATION = "the exploration schedule (epsilon recomputed for the frames so far)"
#: Live keys every off-policy algorithm here has (besides its own).
_OFF_POLICY_LIVE = {"lr": _LR, "gamma": _TD, "max_grad_norm": _GRAD, "optim_steps_per_batch": _STEPS}
ALGORITHMS: dict[str, AlgorithmSpec] = {
    "ppo": AlgorithmSpec(
        PPOConfig,
        ("loss_module.actor_network", "loss_module.critic_network"),
        ("discrete", "box"),
        off_policy=False,
        live_keys={
            "lr": _LR,
            "clip_epsilon": "the loss's clip range (and the start of its annealing)",
            "entropy_coef": "the loss's entropy coefficient",
            "critic_coef": "the loss's critic coefficient",
            "gamma": "GAE's discount",
            "gae_lambda": "GAE's lambda",
            "max_grad_norm": _GRAD,
            "epochs": "the trainer's passes over each batch",
        },
    ),
    "dqn": AlgorithmSpec(
        DQNConfig,
        ("loss_module.value_network",),
        ("discrete",),
        off_policy=True,
        live_keys={
            **_OFF_POLICY_LIVE,
            "target_update_interval": "the target network's copy interval",
            "eps_init": _EXPLORATION,
            "eps_end": _EXPLORATION,
            "exploration_fraction": _EXPLORATION,
        },
    ),
    "sac": AlgorithmSpec(
        SACConfig,
        ("loss_module.actor_network", "loss_module.qvalue_network"),
        ("box",),
        off_policy=True,
        live_keys={
            **_OFF_POLICY_LIVE,
            "tau": "the soft target update's rate",
            "target_entropy": "the temperature's target entropy",
        },
    ),
}

#: Why a key cannot change on a live trainer (population-based training refuses it), by key.
FIXED_KEYS = {
    "algo.name": "the algorithm is the trainer itself",
    "algo.hidden_sizes": "it sets the networks' shapes, which a donor's weights must fit",
    "algo.activation": "it is part of the networks a donor's weights were trained in",
    "algo.buffer_size": "the replay buffer's storage is allocated once, at build",
    "algo.batch_size": "the replay buffer's sampler is built with it",
    "algo.minibatch_size": "the PPO buffer's sampler is built with it",
    "algo.anneal_lr": "the learning-rate schedule is built (or not) once",
    "algo.anneal_clip": "the clip annealing is built (or not) once",
    "algo.recompute_advantages": "the trainer's stages are wired once, at build",
    "algo.critic_loss": "the loss function is chosen at build",
    "algo.ortho_init": "it only concerns the initial weights, which an exploit replaces",
    "algo.double_dqn": "the loss's target is wired once, at build",
    "algo.alpha_init": "it only sets the temperature's start; the temperature is learned (and copied)",
}


def live_key_refusal(algo: str, key: str) -> str | None:
    """Why ``key`` cannot take a new value on a live ``algo`` trainer; ``None`` if it can.

    Examples:
        >>> live_key_refusal("ppo", "algo.lr") is None
        True
        >>> live_key_refusal("ppo", "algo.hidden_sizes")
        "it sets the networks' shapes, which a donor's weights must fit"
        >>> live_key_refusal("dqn", "env.id")
        'only algorithm hyperparameters change on a live trainer (env.*, collector.* and the rest are built once)'
    """
    prefix, _, name = key.partition(".")
    if prefix == "algo" and name in ALGORITHMS[algo].live_keys:
        return None
    if key in FIXED_KEYS:
        return FIXED_KEYS[key]
    if prefix == "algo":
        return f"{algo} takes no new value of it on a live trainer"
    return "only algorithm hyperparameters change on a live trainer (env.*, collector.* and the rest are built once)"
