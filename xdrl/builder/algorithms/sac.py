"""SAC with twin Q-networks, soft target updates and a learned temperature (box actions)."""

from __future__ import annotations

from typing import Any

import torch
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.modules import ValueOperator
from torchrl.objectives import SACLoss, SoftUpdate

from xdrl.builder.algorithms.common import (
    TRANSITION_KEYS,
    AlgorithmParts,
    BuildContext,
    make_collector,
    make_trainer,
    mlp,
    register_replay_buffer,
    register_target_updates,
    register_weight_updates,
    stochastic_actor,
)
from xdrl.config.algorithms import SACConfig


def build(config: SACConfig, ctx: BuildContext) -> AlgorithmParts:
    """Tanh-normal actor, twin Q-networks, SAC loss, replay buffer, and a TorchRL trainer wired as TorchRL's ``SACTrainer`` is.

    Each iteration: the batch into the replay buffer, ``optim_steps_per_batch``
    sampled updates (each followed by a soft update of the target Q-networks), then
    the new weights to the collector.
    """
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
    target_updater = SoftUpdate(loss, tau=config.tau)
    trainer = make_trainer(
        ctx,
        collector=make_collector(ctx, actor),
        loss_module=loss,
        optimizer=torch.optim.Adam(loss.parameters(), lr=config.lr),
        optim_steps_per_batch=config.optim_steps_per_batch,
        clip_norm=config.max_grad_norm,
        replay_buffer=buffer,
        target_net_updater=target_updater,
    )
    register_replay_buffer(trainer, buffer, keys=TRANSITION_KEYS)
    register_target_updates(trainer, target_updater)
    register_weight_updates(trainer, loss.actor_network)

    def extra_state() -> dict[str, Any]:
        return {"replay_buffer": buffer.state_dict()}

    def load_extra_state(state: dict[str, Any]) -> None:
        buffer.load_state_dict(state["replay_buffer"])

    return AlgorithmParts(trainer, actor, "loss_module.actor_network", extra_state, load_extra_state)
