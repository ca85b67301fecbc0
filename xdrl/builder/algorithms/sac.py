"""SAC with twin Q-networks, soft target updates and a learned temperature (box actions)."""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import ValueOperator
from torchrl.objectives import SACLoss, SoftUpdate
from torchrl.objectives.sac import compute_rsample_log_prob
from torchrl.objectives.utils import distance_loss

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
    mlp_with,
    register_replay_buffer,
    register_target_updates,
    register_weight_updates,
    shared_live_values,
    stochastic_actor,
    tensor_value,
)
from xdrl.builder.collection import actor_dist
from xdrl.config.algorithms import SACConfig


class DirectSACLoss(SACLoss):
    """TorchRL's ``SACLoss`` (v2: twin Q-networks, learned temperature; same parameters, targets, keys, state) on tensors.

    TorchRL runs the twin Q-networks through ``vmap`` over TensorDicts and swaps parameters
    in and out of the actor on every call: about half of a 13.6 ms loss forward on the
    Pendulum preset (256x256 networks, batch 256) is that bookkeeping. Here both Q-networks
    run as batched matrix products over their stacked parameters (``qvalue_network_params``,
    ``target_qvalue_network_params``, read at each call), the actor's distribution and
    reparameterised sample from the actor's network on tensors (:func:`~xdrl.builder.collection.actor_dist`,
    else TorchRL's ``get_dist``) and TorchRL's ``compute_rsample_log_prob``, and
    the losses are TorchRL's: the Q-loss against ``reward + gamma * (1 - terminated) *
    (min target Q(next, a') - alpha * log pi(a'|next))`` summed over the twins, the actor's
    ``alpha * log pi - min Q`` with the Q-parameters detached, the temperature's
    ``-log_alpha * (log pi + target_entropy)``, each a mean over the batch. Written here
    because TorchRL's SAC has no non-functional path. Configurations this does not cover
    (SAC v1's value network, reductions other than the mean, bounded log-alpha, prioritised
    weights, skipped done states) go to TorchRL's forward. ``tests/builder/test_speed_options.py``
    checks losses and gradients against ``SACLoss.forward``.
    """

    def _twin_q(self, params: TensorDictBase, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Both Q-networks on (observation, action): ``[num_qvalue_nets, *batch]``."""
        x = torch.cat([observation, action], -1).expand(self.num_qvalue_nets, *observation.shape[:-1], -1)
        return mlp_with(self.qvalue_network.module, params, ("module",), x).squeeze(-1)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        keys = self.tensor_keys
        if (
            self._version != 2
            or self.reduction != "mean"
            or self.skip_done_states
            or self.min_log_alpha is not None
            or self.max_log_alpha is not None
            or keys.priority_weight in tensordict.keys()
            or list(self.qvalue_network.in_keys) != ["observation", keys.action]
            or tensordict.ndim != 1
        ):
            return super().forward(tensordict)
        alpha = self._alpha
        observation, action = tensordict.get("observation"), tensordict.get(keys.action)
        next_observation = tensordict.get(("next", "observation"))
        with torch.no_grad():
            with set_exploration_type(ExplorationType.RANDOM):
                next_dist = actor_dist(
                    self.actor_network, TensorDict({"observation": next_observation}, tensordict.batch_size)
                )
                next_action, next_log_prob = compute_rsample_log_prob(next_dist)
            next_q = self._twin_q(self.target_qvalue_network_params, next_observation, next_action)
            next_value = (next_q - alpha * next_log_prob).min(0)[0]
            reward = tensordict.get(("next", keys.reward)).squeeze(-1)
            alive = (~tensordict.get(("next", keys.terminated))).squeeze(-1).to(reward.dtype)
            target = reward + self.value_estimator.gamma * alive * next_value
        predicted = self._twin_q(self.qvalue_network_params, observation, action)
        loss_qvalue = distance_loss(predicted, target.expand_as(predicted), loss_function=self.loss_function).sum(0)
        with set_exploration_type(ExplorationType.RANDOM):
            dist = actor_dist(self.actor_network, tensordict.select("observation"))
            new_action, log_prob = compute_rsample_log_prob(dist)
        min_q = self._twin_q(self._cached_detached_qvalue_params, observation, new_action).min(0)[0]
        loss_actor = alpha * log_prob - min_q
        return TensorDict(
            {
                "loss_actor": loss_actor.mean(),
                "loss_qvalue": loss_qvalue.mean(),
                "loss_alpha": self._alpha_loss(log_prob.detach()).mean(),
                "alpha": alpha,
                "entropy": -log_prob.detach().mean(),
            }
        )


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
    loss = DirectSACLoss(
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
