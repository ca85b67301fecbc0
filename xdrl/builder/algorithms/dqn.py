"""DQN with a target network and linearly annealed epsilon-greedy exploration."""

from __future__ import annotations

from typing import Any

import torch
from tensordict.nn import TensorDictSequential
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.modules import EGreedyModule, QValueActor
from torchrl.objectives import DQNLoss, HardUpdate
from torchrl.trainers import LRSchedulerHook
from torchrl.trainers.algorithms import DQNTrainer

from xdrl._compat import greedy_last_frames, set_greedy_last_frames
from xdrl.builder.algorithms.common import (
    AlgorithmParts,
    BuildContext,
    annealed_lr,
    make_collector,
    make_trainer,
    mlp,
)
from xdrl.config.algorithms import DQNConfig


def build(config: DQNConfig, ctx: BuildContext) -> AlgorithmParts:
    """Q-network, epsilon-greedy policy, DQN loss, replay buffer and TorchRL's ``DQNTrainer``."""
    action_spec = ctx.action_spec()
    info = ctx.env_info
    q_net = mlp(info.observation_dim, info.num_actions, config.hidden_sizes, config.activation, ctx.device)
    actor = QValueActor(q_net, in_keys=["observation"], spec=action_spec)
    greedy = EGreedyModule(
        action_spec,
        eps_init=config.eps_init,
        eps_end=config.eps_end,
        annealing_num_steps=max(int(config.exploration_fraction * ctx.total_frames), 1),
    ).to(ctx.device)
    policy = TensorDictSequential(actor, greedy)
    loss = DQNLoss(
        actor, action_space=action_spec, delay_value=True, double_dqn=config.double_dqn, loss_function="smooth_l1"
    )
    loss.make_value_estimator(gamma=config.gamma)
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(config.buffer_size, device=ctx.device), batch_size=config.batch_size
    )
    optimizer = torch.optim.Adam(loss.parameters(), lr=config.lr)
    trainer = make_trainer(
        DQNTrainer,
        ctx,
        collector=make_collector(ctx, policy),
        optim_steps_per_batch=config.optim_steps_per_batch,
        loss_module=loss,
        optimizer=optimizer,
        replay_buffer=buffer,
        target_net_updater=HardUpdate(loss, value_network_update_interval=config.target_update_interval),
        greedy_module=greedy,
        clip_norm=config.max_grad_norm,
    )
    schedule = annealed_lr(optimizer, ctx.iterations) if config.anneal_lr else None
    if schedule is not None:
        LRSchedulerHook(schedule).register(trainer)  # stepped once per collected batch, part of the trainer state

    def extra_state() -> dict[str, Any]:
        return {
            "replay_buffer": buffer.state_dict(),
            "greedy": greedy.state_dict(),
            "greedy_last_frames": greedy_last_frames(trainer),
        }

    def load_extra_state(state: dict[str, Any]) -> None:
        buffer.load_state_dict(state["replay_buffer"])
        greedy.load_state_dict(state["greedy"])
        set_greedy_last_frames(trainer, state["greedy_last_frames"])

    return AlgorithmParts(trainer, policy, "loss_module.value_network", extra_state, load_extra_state, schedule)
