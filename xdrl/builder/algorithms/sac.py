"""SAC with twin Q-networks, soft target updates and a learned temperature (box actions)."""

from __future__ import annotations

from typing import Any

from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.modules import ValueOperator
from torchrl.objectives import SACLoss, SoftUpdate

from xdrl.builder.algorithms.common import (
    TRANSITION_KEYS,
    AlgorithmParts,
    BuildContext,
    LiveValue,
    adam,
    attribute_value,
    make_collector,
    make_trainer,
    mlp,
    register_replay_buffer,
    register_target_updates,
    register_weight_updates,
    shared_live_values,
    stochastic_actor,
    tensor_value,
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
        target_entropy="auto" if config.target_entropy is None else config.target_entropy,
    )
    # Resolved now (TorchRL makes the buffer on first use), so that every SAC trainer's state has it.
    auto_entropy = float(loss.target_entropy)
    loss.make_value_estimator(gamma=config.gamma)
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(config.buffer_size, device=ctx.device), batch_size=config.batch_size
    )
    target_updater = SoftUpdate(loss, tau=config.tau)
    trainer = make_trainer(
        ctx,
        collector=make_collector(ctx, actor),
        loss_module=loss,
        optimizer=adam(loss.parameters(), config.lr),
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

    def set_target_entropy(value: Any) -> None:
        loss.target_entropy.fill_(auto_entropy if value is None else float(value))

    def set_tau(value: Any) -> None:
        target_updater.eps = 1.0 - float(value)

    live = {
        **shared_live_values(trainer, None, ctx.iterations),
        "gamma": tensor_value(loss.value_estimator, "gamma"),
        "tau": LiveValue(lambda: float(format(1.0 - float(target_updater.eps), ".12g")), set_tau),
        "target_entropy": LiveValue(lambda: float(loss.target_entropy), set_target_entropy),
        "optim_steps_per_batch": attribute_value(trainer, "optim_steps_per_batch", int),
    }
    return AlgorithmParts(trainer, actor, "loss_module.actor_network", extra_state, load_extra_state, live=live)
