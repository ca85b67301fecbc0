"""PPO (clipped objective) with GAE, on discrete or box actions."""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.modules import ValueOperator
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.utils import distance_loss
from torchrl.objectives.value import GAE
from torchrl.objectives.value.functional import generalized_advantage_estimate, vec_generalized_advantage_estimate
from torchrl.trainers import LRSchedulerHook

from xdrl.builder.algorithms.common import (
    AlgorithmParts,
    BuildContext,
    LiveValue,
    adam,
    annealed_lr,
    attribute_value,
    make_collector,
    make_trainer,
    mlp,
    orthogonal_init,
    register_replay_buffer,
    register_weight_updates,
    shared_live_values,
    stochastic_actor,
    tensor_value,
)
from xdrl.builder.collection import actor_dist
from xdrl.config.algorithms import PPOConfig


def _functional_names(state_dict: dict, prefix: str, *args: object) -> None:
    """Read checkpoints of xdrl versions whose PPO loss was functional (``actor_network_params.*``)."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        for old, new in (("actor_network_params.", "actor_network."), ("critic_network_params.", "critic_network.")):
            if key.startswith(prefix + old):
                state_dict[prefix + new + key[len(prefix + old) :]] = state_dict.pop(key)


def gae_by_matrix(
    gamma: Any,
    lmbda: Any,
    state_value: torch.Tensor,
    next_state_value: torch.Tensor,
    reward: torch.Tensor,
    done: torch.Tensor,
    terminated: torch.Tensor,
    *,
    time_dim: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """TorchRL's ``generalized_advantage_estimate`` on ``[envs, time, 1]`` tensors as one batched matrix product.

    The advantage at ``t`` is the sum over ``j >= t`` of ``(gamma * lmbda) ** (j - t) * delta[j]``
    while no episode ends in ``t .. j-1``, which TorchRL computes by a Python loop over the
    time steps (0.67-0.74 ms for the CartPole preset's 8x32 batch, before each of its 20
    epochs). The weights are a ``[time, time]`` triangle of powers, masked per env where the
    count of episode ends before ``t`` and before ``j`` differ: a handful of tensor ops.
    Same results up to float rounding (the powers are computed, not multiplied up step by
    step); ``tests/builder/test_speed_options.py`` compares it with TorchRL's GAE.
    """
    steps = state_value.shape[-2]
    not_terminated = (~terminated).to(state_value.dtype)
    delta = reward + gamma * not_terminated * next_state_value - state_value
    offsets = torch.arange(steps, device=state_value.device)
    offsets = offsets.unsqueeze(0) - offsets.unsqueeze(1)  # [t, j]: j - t
    powers = torch.as_tensor(gamma * lmbda, dtype=state_value.dtype, device=state_value.device) ** offsets.clamp_min(0)
    powers = powers * (offsets >= 0)
    ends = done.squeeze(-1).to(torch.int32)
    ends_before = ends.cumsum(-1) - ends  # [envs, time]: episode ends before each step
    same_episode = ends_before.unsqueeze(-1) == ends_before.unsqueeze(-2)  # [envs, t, j]
    advantage = torch.bmm(powers * same_episode, delta)
    return advantage, advantage + state_value


class DirectGAE(GAE):
    """TorchRL's ``GAE`` (same settings, buffers, keys and functional recursion) with the critic called once, on tensors.

    TorchRL's forward runs the critic through ``vmap`` over a stacked observation/next
    observation TensorDict and prepares shifted TensorDicts around the recursion: 3.7 ms
    per call on the CartPole preset's 8x32 batch, where the same values, the same
    ``generalized_advantage_estimate`` and the same standardisation take well under 1 ms.
    PPO recomputes advantages before each of its 20 epochs, so this is most of the
    difference. Written here because TorchRL's GAE has no such path; anything this does
    not cover (functional parameters, differentiable or auto-reset estimates, grouped
    standardisation, masked "shifted_valid" data, critics reading several entries) goes
    to TorchRL's own forward. ``tests/builder/test_speed_options.py`` checks the outputs
    against ``GAE.forward``.
    """

    def forward(
        self,
        tensordict: TensorDictBase,
        *,
        params: Any = None,
        target_params: Any = None,
        time_dim: int | None = None,
    ) -> TensorDictBase:
        critic = self.value_network
        if (
            params is not None
            or target_params is not None
            or self.differentiable
            or self.auto_reset_env
            or self.group_key is not None
            or critic is None
            or len(critic.in_keys) != 1
            or "shifted_valid" in tensordict.keys()
        ):
            return super().forward(tensordict, params=params, target_params=target_params, time_dim=time_dim)
        key = critic.in_keys[0]
        time_dim = self._get_time_dim(time_dim, tensordict)
        keys = self.tensor_keys
        with torch.no_grad():
            observation = tensordict.get(key)
            values = critic.module(torch.cat([observation, tensordict.get(("next", key))]))
            value, next_value = values[: observation.shape[0]], values[observation.shape[0] :]
            done = tensordict.get(("next", keys.done))
            if value.ndim == 3 and value.shape[-1] == 1 and time_dim in (1, -2):
                estimate = gae_by_matrix  # one [envs, time] batch: the case of every PPO batch xdrl collects
            elif self.vectorized:
                estimate = vec_generalized_advantage_estimate
            else:
                estimate = generalized_advantage_estimate
            advantage, value_target = estimate(
                self.gamma,
                self.lmbda,
                value,
                next_value,
                tensordict.get(("next", keys.reward)),
                done=done,
                terminated=tensordict.get(("next", keys.terminated), done),
                time_dim=time_dim,
            )
            if self.average_gae:
                advantage = (advantage - advantage.mean()) / advantage.std().clamp_min(1e-4)
        tensordict.set(keys.advantage, advantage)
        tensordict.set(keys.value_target, value_target)
        tensordict.set(keys.value, value)
        tensordict.set(("next", keys.value), next_value)
        return tensordict


class DirectClipPPOLoss(ClipPPOLoss):
    """TorchRL's ``ClipPPOLoss`` (same networks, buffers, keys and outputs) with its forward on plain tensors.

    The clipped surrogate, entropy bonus and critic loss of TorchRL's forward, without its
    per-call TensorDict work (a shallow clone, nested gets, stacking the two gains, the
    per-entry reduction): written here because that work is most of a PPO update on small
    models. The distribution is built from the actor's network outputs on tensors
    (:func:`~xdrl.builder.collection.actor_dist`, else TorchRL's ``get_dist``), the entropy from
    TorchRL's ``_get_entropy``; a critic reading one entry is called on it directly (others through
    TorchRL's ``loss_critic``), with TorchRL's distance and explained variance. Anything else TorchRL's loss offers
    (value clipping, a delayed actor, capped importance ratios, per-head entropy, composite
    actions, asymmetric clipping, advantages computed inside the loss, advantage
    normalisation) goes to ``ClipPPOLoss.forward``. ``tests/builder/test_speed_options.py``
    checks losses and gradients against it.
    """

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        keys = self.tensor_keys
        advantage = tensordict.get(keys.advantage, None)
        if (
            advantage is None
            or self.functional
            or self.clip_value
            or self.delay_actor
            or self.normalize_advantage
            or self.max_importance_ratio is not None
            or self._entropy_coeff_map is not None
            or self._asymmetric_clip
            or not isinstance(keys.action, str)
        ):
            return super().forward(tensordict)
        previous = tensordict.get(keys.sample_log_prob)
        dist = actor_dist(self.actor_network, tensordict)
        if isinstance(previous, TensorDictBase) or not isinstance(dist, torch.distributions.Distribution):
            return super().forward(tensordict)
        log_weight = (dist.log_prob(tensordict.get(keys.action)) - previous).unsqueeze(-1)
        clipped = log_weight.clamp(*self._clip_bounds)
        gain = torch.minimum(log_weight.exp() * advantage, clipped.exp() * advantage)
        out = {"loss_objective": -gain.mean()}
        with torch.no_grad():
            weights = log_weight.squeeze(-1)
            ess = (2 * weights.logsumexp(0) - (2 * weights).logsumexp(0)).exp()
            ratio = log_weight.exp()
            out["clip_fraction"] = (clipped != log_weight).to(log_weight.dtype).mean()
            out["kl_approx"] = (-log_weight).mean()
        if self.entropy_bonus:
            entropy = self._get_entropy(dist, adv_shape=advantage.shape[:-1])
            out["entropy"] = entropy.detach().mean()
            out["loss_entropy"] = (-self.entropy_coeff * entropy).mean()
        if self._has_critic and len(self.critic_network.in_keys) == 1:
            # TorchRL's ``loss_critic`` without the TensorDict round trip of the critic.
            value = self.critic_network.module(tensordict.get(self.critic_network.in_keys[0]))
            target = tensordict.get(keys.value_target)
            out["loss_critic"] = (self.critic_coeff * distance_loss(target, value, self.loss_critic_type)).mean()
            if self.log_explained_variance:
                with torch.no_grad():
                    unexplained = torch.var(target - value, correction=0, dim=0)
                    total = torch.var(target, correction=0, dim=0)
                    out["explained_variance"] = 1.0 - unexplained / (total + torch.finfo(target.dtype).eps)
        elif self._has_critic:
            loss_critic, _, explained_variance = self.loss_critic(tensordict)
            out["loss_critic"] = loss_critic.mean()
            if explained_variance is not None:
                out["explained_variance"] = explained_variance
        out["ESS"] = ess / log_weight.shape[0]
        out["max_ratio"] = ratio.max()
        out["mean_ratio"] = ratio.mean()
        return TensorDict(out)


def build(config: PPOConfig, ctx: BuildContext) -> AlgorithmParts:
    """Actor, critic, clipped PPO loss, collector, and a TorchRL trainer wired as TorchRL's ``PPOTrainer`` is.

    Each iteration: GAE over the collected batch, then ``epochs`` passes over it in
    minibatches without replacement, then the learning-rate step (``anneal_lr``) and
    the new weights to the collector.
    """
    action_spec = ctx.action_spec()
    info = ctx.env_info
    actor = stochastic_actor(info, action_spec, config.hidden_sizes, config.activation, ctx.device)
    critic = ValueOperator(
        mlp(info.observation_dim, 1, config.hidden_sizes, config.activation, ctx.device), in_keys=["observation"]
    )
    if config.ortho_init:
        orthogonal_init(actor, output_gain=0.01)
        orthogonal_init(critic, output_gain=1.0)
    loss = DirectClipPPOLoss(
        actor,
        critic,
        clip_epsilon=config.clip_epsilon,
        entropy_coeff=config.entropy_coef,
        critic_coeff=config.critic_coef,
        loss_critic_type=config.critic_loss,
        normalize_advantage=False,  # the trainer's GAE already standardises advantages
        # The loss calls the actor and critic as they are, instead of swapping their parameters in
        # and out of them on every call (TorchRL's functional losses): 7.0 -> 5.2 ms per update
        # (PPO CartPole, fused Adam). Nothing needs the functional form: PPO has no target network.
        functional=False,
    )
    loss._register_load_state_dict_pre_hook(_functional_names)
    optimizer = adam(loss.parameters(), config.lr)
    scheduler = annealed_lr(optimizer, ctx.iterations) if config.anneal_lr else None
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(ctx.frames_per_batch, device=ctx.device),
        sampler=SamplerWithoutReplacement(),
        batch_size=config.minibatch_size,
    )
    trainer = make_trainer(
        ctx,
        collector=make_collector(ctx, actor),
        loss_module=loss,
        optimizer=optimizer,
        optim_steps_per_batch=max(ctx.frames_per_batch // config.minibatch_size, 1),
        num_epochs=config.epochs,
        clip_norm=config.max_grad_norm,
        replay_buffer=buffer,
    )
    gae = DirectGAE(gamma=config.gamma, lmbda=config.gae_lambda, value_network=loss.critic_network, average_gae=True)
    gae.set_keys(reward="reward", done="done", terminated="terminated")  # as PPOTrainer sets them
    if scheduler is not None:
        LRSchedulerHook(scheduler).register(trainer)  # stepped once per collected batch, part of the trainer state
    sampling = register_replay_buffer(trainer, buffer, stage=None)

    # SB3's and CleanRL's PPO, which RL Zoo3's tuned settings assume: advantages once per
    # collected batch, which goes into the buffer once; every epoch samples it anew.
    # With ``recompute_advantages`` (TorchRL's PPOTrainer): again before every further epoch,
    # with the critic as it is then, written over the stored ones (the batch fills the buffer
    # from its start: the buffer holds exactly one batch).
    epochs_done = [0]

    def advantages_once(batch: TensorDictBase) -> TensorDictBase:
        batch = gae(batch)
        sampling.extend(batch)
        epochs_done[0] = 0
        return batch

    def advantages_again(batch: TensorDictBase) -> TensorDictBase:
        epochs_done[0] += 1
        if epochs_done[0] > 1:
            fresh = gae(batch).select(gae.tensor_keys.advantage, gae.tensor_keys.value_target).reshape(-1)
            buffer.storage.set(slice(0, fresh.shape[0]), fresh)
        return batch

    trainer.register_op("batch_process", advantages_once)
    if config.recompute_advantages:
        trainer.register_op("pre_epoch", advantages_again)
    clip = tensor_value(loss, "clip_epsilon")
    if config.anneal_clip:
        # RL Zoo3's ``clip_range: lin_0.2``: the clip range at the fraction of the budget still to come.
        # Derived from the frame count, so a restored run is where it left off without any state.
        start_clip = [config.clip_epsilon]

        def anneal_clip() -> None:
            remaining = max(1.0 - trainer.collected_frames / trainer.total_frames, 0.0)
            loss.clip_epsilon.fill_(start_clip[0] * remaining)

        trainer.register_op("pre_optim_steps", anneal_clip)
        # The configured value is the annealing's start.
        clip = LiveValue(lambda: start_clip[0], lambda value: start_clip.__setitem__(0, float(value)))
    register_weight_updates(trainer, loss.actor_network)
    live = {
        **shared_live_values(trainer, scheduler, ctx.iterations),
        "clip_epsilon": clip,
        "entropy_coef": tensor_value(loss, "entropy_coeff"),
        "critic_coef": tensor_value(loss, "critic_coeff"),
        "gamma": tensor_value(gae, "gamma"),
        "gae_lambda": tensor_value(gae, "lmbda"),
        "epochs": attribute_value(trainer, "num_epochs", int),
    }
    return AlgorithmParts(trainer, actor, "loss_module.actor_network", lr_schedule=scheduler, live=live)
