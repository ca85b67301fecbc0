"""PPO (clipped objective) with GAE, on discrete or box actions."""

from __future__ import annotations

import torch
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.modules import ValueOperator
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE
from torchrl.trainers import LRSchedulerHook, ValueEstimatorHook

from xdrl.builder.algorithms.common import (
    AlgorithmParts,
    BuildContext,
    annealed_lr,
    make_collector,
    make_trainer,
    mlp,
    register_replay_buffer,
    register_weight_updates,
    stochastic_actor,
)
from xdrl.config.algorithms import PPOConfig


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
    loss = ClipPPOLoss(
        actor,
        critic,
        clip_epsilon=config.clip_epsilon,
        entropy_coeff=config.entropy_coef,
        critic_coeff=config.critic_coef,
        normalize_advantage=False,  # the trainer's GAE already standardises advantages
    )
    optimizer = torch.optim.Adam(loss.parameters(), lr=config.lr)
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
    # Advantages and value targets of the whole batch, before the first epoch (pre_epoch).
    gae = GAE(gamma=config.gamma, lmbda=config.gae_lambda, value_network=loss.critic_network, average_gae=True)
    gae.set_keys(reward="reward", done="done", terminated="terminated")  # as PPOTrainer sets them
    ValueEstimatorHook(gae).register(trainer)
    if scheduler is not None:
        LRSchedulerHook(scheduler).register(trainer)  # stepped once per collected batch, part of the trainer state
    register_replay_buffer(trainer, buffer)  # after GAE: the buffer holds the batch with its advantages
    register_weight_updates(trainer, loss.actor_network)
    return AlgorithmParts(trainer, actor, "loss_module.actor_network", lr_schedule=scheduler)
