"""SAC with twin Q-networks, soft target updates and a learned temperature (box actions)."""

from __future__ import annotations

from typing import Any

import torch
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.modules import ValueOperator
from torchrl.objectives import SACLoss, SoftUpdate
from torchrl.trainers.algorithms import SACTrainer

from xdrl.builder.algorithms.common import (
    AlgorithmParts,
    BuildContext,
    make_collector,
    make_trainer,
    mlp,
    stochastic_actor,
)
from xdrl.config.algorithms import SACConfig


def build(config: SACConfig, ctx: BuildContext) -> AlgorithmParts:
    """Tanh-normal actor, twin Q-networks, SAC loss, replay buffer and TorchRL's ``SACTrainer``."""
    action_spec = ctx.action_spec()
    info = ctx.env_info
    actor = stochastic_actor(info, action_spec, config.hidden_sizes, config.activation, ctx.device)
    qvalue = ValueOperator(
        mlp(info.observation_dim + info.action_dim, 1, config.hidden_sizes, config.activation, ctx.device),
        in_keys=["observation", "action"],
        out_keys=["state_action_value"],
    )
    loss = SACLoss(
        actor_network=actor,
        qvalue_network=qvalue,
        num_qvalue_nets=2,
        alpha_init=config.alpha_init,
        delay_qvalue=True,
        action_spec=action_spec,
    )
    loss.make_value_estimator(gamma=config.gamma)
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(config.buffer_size, device=ctx.device), batch_size=config.batch_size
    )
    trainer = make_trainer(
        SACTrainer,
        ctx,
        collector=make_collector(ctx, actor),
        optim_steps_per_batch=config.optim_steps_per_batch,
        loss_module=loss,
        optimizer=torch.optim.Adam(loss.parameters(), lr=config.lr),
        replay_buffer=buffer,
        target_net_updater=SoftUpdate(loss, tau=config.tau),
        clip_norm=config.max_grad_norm,
    )

    def extra_state() -> dict[str, Any]:
        return {"replay_buffer": buffer.state_dict()}

    def load_extra_state(state: dict[str, Any]) -> None:
        buffer.load_state_dict(state["replay_buffer"])

    return AlgorithmParts(trainer, actor, "loss_module.actor_network", extra_state, load_extra_state)
