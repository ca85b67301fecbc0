"""Small CartPole trainers with the full xdrl hook set (the README's first example).

Plumbing for the example run, the hook tests and ``benchmarks/hook_overhead.py``:
plain TorchRL objects with explicit arguments, no config system.
"""

from __future__ import annotations

import pathlib
import warnings
from typing import Any

import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.envs import Compose, GymEnv, RewardSum, StepCounter, TransformedEnv
from torchrl.modules import MLP, EGreedyModule, OneHotCategorical, ProbabilisticActor, QValueActor, ValueOperator
from torchrl.objectives import ClipPPOLoss, DQNLoss, HardUpdate
from torchrl.trainers import Trainer
from torchrl.trainers.algorithms import DQNTrainer, PPOTrainer

from xdrl.trainer_hooks import (
    LoggingEvaluationHookSet,
    LoggingHookSet,
    PolicyCheckpointHook,
    WandbFinishHook,
    WandbFlushHook,
)

SINGLE_AGENT_KEYS = {
    "reward_key": ("next", "reward"),
    "episode_reward_key": ("next", "episode_reward"),
}


def make_cartpole_env(*, seed: int = 0, render: bool = False) -> TransformedEnv:
    """CartPole-v1 with a step counter and the running episode return."""
    kwargs = {"render_mode": "rgb_array"} if render else {}
    env = TransformedEnv(GymEnv("CartPole-v1", **kwargs), Compose(StepCounter(), RewardSum()))
    env.set_seed(seed)
    return env


def _quiet(factory: Any, **kwargs: Any) -> Any:
    # TorchRL flags its algorithm trainers as prototypes on every construction.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*experimental/prototype.*")
        return factory(**kwargs)


def make_ppo_trainer(
    *,
    total_frames: int = 2048,
    frames_per_batch: int = 256,
    minibatch: int = 64,
    epochs: int = 4,
    lr: float = 3e-4,
    seed: int = 0,
    logger: Any = None,
    progress_bar: bool = False,
) -> Trainer:
    """A PPO trainer on CartPole-v1 (TorchRL's ``PPOTrainer``), without xdrl hooks."""
    torch.manual_seed(seed)
    env = make_cartpole_env(seed=seed)
    n_obs, n_actions = env.observation_spec["observation"].shape[-1], env.action_spec.shape[-1]
    actor = ProbabilisticActor(
        TensorDictModule(
            MLP(in_features=n_obs, out_features=n_actions, num_cells=[64, 64], activation_class=nn.Tanh),
            ["observation"],
            ["logits"],
        ),
        in_keys=["logits"],
        spec=env.action_spec,
        distribution_class=OneHotCategorical,
        return_log_prob=True,
    )
    critic = ValueOperator(
        MLP(in_features=n_obs, out_features=1, num_cells=[64, 64], activation_class=nn.Tanh), in_keys=["observation"]
    )
    loss = ClipPPOLoss(actor, critic, clip_epsilon=0.2, entropy_coeff=0.0, critic_coeff=0.5)
    collector = Collector(env, actor, frames_per_batch=frames_per_batch, total_frames=total_frames)
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(frames_per_batch), sampler=SamplerWithoutReplacement(), batch_size=minibatch
    )
    return _quiet(
        PPOTrainer,
        collector=collector,
        total_frames=total_frames,
        frame_skip=1,
        optim_steps_per_batch=frames_per_batch // minibatch,
        num_epochs=epochs,
        loss_module=loss,
        optimizer=torch.optim.Adam(loss.parameters(), lr=lr),
        replay_buffer=buffer,
        logger=logger,
        log_interval=0,
        progress_bar=progress_bar,
        enable_logging=False,
        auto_log_optim_steps=False,
        seed=seed,
    )


def make_dqn_trainer(
    *,
    total_frames: int = 1024,
    frames_per_batch: int = 128,
    batch_size: int = 64,
    optim_steps: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    logger: Any = None,
    progress_bar: bool = False,
) -> Trainer:
    """A DQN trainer on CartPole-v1 (TorchRL's ``DQNTrainer``), without xdrl hooks."""
    torch.manual_seed(seed)
    env = make_cartpole_env(seed=seed)
    q_net = MLP(
        in_features=env.observation_spec["observation"].shape[-1],
        out_features=env.action_spec.shape[-1],
        num_cells=[64, 64],
    )
    actor = QValueActor(q_net, in_keys=["observation"], spec=env.action_spec)
    greedy = EGreedyModule(env.action_spec, eps_init=1.0, eps_end=0.05, annealing_num_steps=total_frames // 2)
    policy = TensorDictSequential(actor, greedy)
    loss = DQNLoss(actor, action_space=env.action_spec, delay_value=True)
    loss.make_value_estimator(gamma=0.99)
    collector = Collector(env, policy, frames_per_batch=frames_per_batch, total_frames=total_frames)
    buffer = ReplayBuffer(storage=LazyTensorStorage(10_000), batch_size=batch_size)
    return _quiet(
        DQNTrainer,
        collector=collector,
        total_frames=total_frames,
        frame_skip=1,
        optim_steps_per_batch=optim_steps,
        loss_module=loss,
        optimizer=torch.optim.Adam(loss.parameters(), lr=lr),
        replay_buffer=buffer,
        target_net_updater=HardUpdate(loss, value_network_update_interval=20),
        greedy_module=greedy,
        logger=logger,
        log_interval=0,
        progress_bar=progress_bar,
        enable_logging=False,
        auto_log_optim_steps=False,
        seed=seed,
    )


def register_full_hook_set(
    trainer: Trainer,
    *,
    checkpoint_dir: str | pathlib.Path,
    checkpoint_interval: int = 2,
    eval_interval_frames: int = 0,
    eval_max_steps: int = 200,
    render: bool = False,
    policy_path: str = "loss_module.actor_network",
    wandb: bool = False,
) -> LoggingHookSet:
    """Register the xdrl hook set on ``trainer``, in the order the stages need.

    Metrics hooks first, then the policy checkpoints, then the W&B flush (last
    ``post_steps_log`` op, so it commits the whole iteration) and finish hooks.
    """
    eval_set = None
    if eval_interval_frames > 0:
        eval_set = LoggingEvaluationHookSet(
            policy=trainer.collector.policy,
            environment=make_cartpole_env(seed=1000, render=render),
            group="agents",
            interval_frames=eval_interval_frames,
            max_steps=eval_max_steps,
            deterministic=True,
            non_deterministic=False,
            render=render,
            video_fps=30,
            reduce_stats=True,
            reward_key=SINGLE_AGENT_KEYS["reward_key"],
        )
    hooks = LoggingHookSet(group="agents", frame_skip=1, reduce_stats=True, eval_hook_set=eval_set, **SINGLE_AGENT_KEYS)
    hooks.register(trainer)
    PolicyCheckpointHook(directory=checkpoint_dir, interval=checkpoint_interval, policy_path=policy_path).register(
        trainer
    )
    if wandb:
        WandbFlushHook().register(trainer)
        WandbFinishHook().register(trainer)
    return hooks
