"""What every algorithm builder shares: the build context, its result, models, collector, trainer and hooks."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.collectors import Collector
from torchrl.data import ReplayBuffer
from torchrl.envs import EnvBase
from torchrl.modules import MLP, OneHotCategorical, ProbabilisticActor, TanhNormal
from torchrl.objectives import LossModule, TargetNetUpdater
from torchrl.trainers import (
    DefaultOptimizationStepper,
    ReplayBufferTrainer,
    TargetNetUpdaterHook,
    Trainer,
    UpdateWeights,
)

from xdrl._compat import set_scheduler_last_lr
from xdrl.builder.collection import DirectCollector, supports
from xdrl.config.environments import EnvInfo

#: The activation classes of the names ``algo.activation`` accepts.
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


@dataclasses.dataclass
class BuildContext:
    """Everything an algorithm builder may use besides its own config."""

    env_info: EnvInfo
    make_env: Callable[[], EnvBase]
    device: torch.device
    seed: int
    total_frames: int
    frames_per_batch: int
    init_random_frames: int
    logger: Any
    progress_bar: bool
    #: ``collector.implementation``: xdrl's :class:`~xdrl.builder.collection.DirectCollector` where it applies, or TorchRL's.
    collector_implementation: str = "xdrl"

    @property
    def iterations(self) -> int:
        """Trainer iterations of the run (one per collected batch), what schedules span."""
        return schedule_iterations(self.total_frames, self.frames_per_batch)

    def action_spec(self) -> Any:
        """One training environment's action spec (read from a throw-away instance), without batch dimensions.

        The models act on any batch; bounds shaped like a batch of envs would not broadcast over minibatches.
        """
        probe = self.make_env()
        try:
            return probe.action_spec_unbatched
        finally:
            probe.close()


@dataclasses.dataclass(frozen=True)
class LiveValue:
    """One hyperparameter on the live objects of a built trainer: read it back, put a new value in force.

    ``get`` reads what the trainer uses now (the optimizer's rate, the loss's buffer...);
    ``set`` changes it there, so the next iteration trains with it.
    """

    get: Callable[[], float]
    set: Callable[[Any], None]


def tensor_value(owner: Any, name: str) -> LiveValue:
    """A hyperparameter held in a scalar tensor attribute of ``owner`` (a loss or value-estimator buffer).

    Looked up at each call: loading a state dict may replace the tensor object. Read back
    to float32's 7 significant digits (0.2, not 0.20000000298...), the precision it holds.
    """
    return LiveValue(
        lambda: float(format(float(getattr(owner, name)), ".7g")),
        lambda value: getattr(owner, name).fill_(float(value)),
    )


def attribute_value(owner: Any, name: str, cast: Callable[[Any], Any] = float) -> LiveValue:
    """A hyperparameter held in a plain attribute of ``owner`` (a trainer setting)."""
    return LiveValue(lambda: cast(getattr(owner, name)), lambda value: setattr(owner, name, cast(value)))


def learning_rate_value(optimizer: torch.optim.Optimizer, schedule: Any, iterations: int) -> LiveValue:
    """The configured learning rate: the optimizer's (or, annealed, the schedule's base) rate."""

    def get() -> float:
        return float(schedule.base_lrs[0] if schedule is not None else optimizer.param_groups[0]["lr"])

    return LiveValue(get, lambda value: apply_learning_rate(optimizer, schedule, float(value), iterations))


@dataclasses.dataclass
class AlgorithmParts:
    """A built algorithm: its TorchRL trainer and what the hooks need from it."""

    trainer: Trainer
    #: The acting policy (exploration follows TorchRL's exploration type).
    policy: nn.Module
    #: Default ``PolicyCheckpointHook.policy_path`` on the trainer.
    policy_path: str
    #: State the trainer's own ``state_dict`` misses (replay buffer, schedules).
    extra_state: Callable[[], dict[str, Any]] = lambda: {}
    load_extra_state: Callable[[dict[str, Any]], None] = lambda state: None
    #: The learning-rate schedule stepped once per iteration (``algo.anneal_lr``), if any.
    lr_schedule: torch.optim.lr_scheduler.LinearLR | None = None
    #: The ``algo.*`` keys of :attr:`xdrl.config.algorithms.AlgorithmSpec.live_keys` (without the
    #: ``algo.`` prefix) on this trainer's live objects.
    live: dict[str, LiveValue] = dataclasses.field(default_factory=dict)


def schedule_iterations(total_frames: int, frames_per_batch: int) -> int:
    """The iterations a per-iteration schedule spans (at least 1)."""
    return max(total_frames // frames_per_batch, 1)


def annealed_lr(optimizer: torch.optim.Optimizer, iterations: int) -> torch.optim.lr_scheduler.LinearLR:
    """``algo.anneal_lr``: the learning rate decays linearly to 1/1000 of its value over ``iterations``."""
    return torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=1e-3, total_iters=iterations)


def apply_learning_rate(optimizer: torch.optim.Optimizer, schedule: Any, lr: float, iterations: int) -> None:
    """Put the configured learning rate into a (restored) optimizer.

    Loading a checkpoint brings back the optimizer's learning rate and the
    schedule's length, which a resume may change (``algo.lr``, a longer
    ``collector.total_frames``). The rate becomes ``lr`` at the point the run has
    reached, and an annealing schedule is stretched over the new ``iterations``:
    the rate is where a run planned this way from the start would be now.
    """
    factor = 1.0
    if schedule is not None:
        schedule.total_iters = iterations
        schedule.base_lrs = [lr] * len(optimizer.param_groups)
        done = min(schedule.last_epoch, iterations)
        factor = schedule.start_factor + (schedule.end_factor - schedule.start_factor) * done / iterations
    for group in optimizer.param_groups:
        group["initial_lr"] = lr
        group["lr"] = lr * factor
    if schedule is not None:
        set_scheduler_last_lr(schedule, [group["lr"] for group in optimizer.param_groups])


def shared_live_values(trainer: Trainer, schedule: Any, iterations: int) -> dict[str, LiveValue]:
    """The live values every algorithm has: learning rate and gradient clip (on the trainer's optimizer)."""
    return {
        "lr": learning_rate_value(trainer.optimizer, schedule, iterations),
        "max_grad_norm": attribute_value(trainer, "clip_norm"),
    }


def apply_hyperparameters(parts: AlgorithmParts, algo: Any) -> dict[str, float]:
    """Put every live hyperparameter of the config ``algo`` in force on the built trainer; returns them.

    After a restore (a resume, a retried trial, a PBT exploit of a donor's checkpoint),
    the loaded state carries the values the checkpoint was trained with: the
    optimizer's rate, the loss's buffers, the exploration schedule. The config's
    values win, so a member that explored new values trains with them.
    """
    for key, value in parts.live.items():
        value.set(getattr(algo, key))
    return {key: value.get() for key, value in parts.live.items()}


def adam(parameters: Any, lr: float) -> torch.optim.Adam:
    """Adam with torch's fused kernel: one kernel for every tensor instead of a loop of small ops.

    The models are small, so the per-tensor loop of the default implementation is much of an
    optimizer step on CPU: PPO CartPole 4.3 -> 3.3 ms per update with the loss and backward,
    DQN CartPole (256x256) 0.87 -> 0.28 ms per step, SAC Pendulum 1.5 -> 0.5 ms. The same
    algorithm (rounding differs): an earlier DQN seed that ended at 121.6 with it and at 500
    without was one seed of a preset whose final returns vary between seeds; DQN and SAC use
    it since their presets met ``benchmarks/learning.py``'s goals with it.
    """
    return torch.optim.Adam(parameters, lr=lr, fused=True)


def mlp(in_features: int, out_features: int, hidden_sizes: Sequence[int], activation: str, device: torch.device) -> MLP:
    return MLP(
        in_features=in_features,
        out_features=out_features,
        num_cells=list(hidden_sizes),
        activation_class=ACTIVATIONS[activation],
        device=device,
    )


def mlp_with(mlp: nn.Module, params: Any, prefix: tuple[str, ...], x: torch.Tensor) -> torch.Tensor:
    """``mlp`` (linear layers and activations) on ``x``, each linear layer's weight and bias read from ``params``.

    ``params`` is a loss's parameter TensorDict (online or target), the layer named ``name``
    at ``(*prefix, name)``. Stacked parameters (a leading ensemble dimension, as SAC's twin
    Q-networks) run as one batched matrix product over ``x`` of shape ``[ensemble, batch, in]``.
    """
    for name, layer in mlp.named_children():
        if not isinstance(layer, nn.Linear):
            x = layer(x)
            continue
        weight, bias = params.get((*prefix, name, "weight")), params.get((*prefix, name, "bias"))
        if weight.dim() == 3:
            x = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
        else:
            x = nn.functional.linear(x, weight, bias)
    return x


def orthogonal_init(module: nn.Module, output_gain: float, hidden_gain: float = 2**0.5) -> None:
    """Orthogonal weights and zero biases in every linear layer of ``module``, the last one with ``output_gain``.

    The initialisation of SB3's (and OpenAI Baselines') PPO, under which RL Zoo3's settings were
    tuned: sqrt(2) in the hidden layers, 0.01 for the policy's output (a near-uniform first
    policy), 1 for the value's.
    """
    layers = [m for m in module.modules() if isinstance(m, nn.Linear)]
    for index, layer in enumerate(layers):
        nn.init.orthogonal_(layer.weight, gain=output_gain if index == len(layers) - 1 else hidden_gain)
        nn.init.zeros_(layer.bias)


def stochastic_actor(
    info: EnvInfo, action_spec: Any, hidden_sizes: Sequence[int], activation: str, device: torch.device
) -> ProbabilisticActor:
    """Categorical actor for discrete actions, tanh-normal actor for box actions."""
    if info.discrete:
        net = mlp(info.observation_dim, info.num_actions, hidden_sizes, activation, device)
        module = TensorDictModule(net, in_keys=["observation"], out_keys=["logits"])
        return ProbabilisticActor(
            module,
            in_keys=["logits"],
            spec=action_spec,
            distribution_class=OneHotCategorical,
            return_log_prob=True,
        )
    net = nn.Sequential(
        mlp(info.observation_dim, 2 * info.action_dim, hidden_sizes, activation, device), NormalParamExtractor()
    )
    module = TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"])
    return ProbabilisticActor(
        module,
        in_keys=["loc", "scale"],
        spec=action_spec,
        distribution_class=TanhNormal,
        distribution_kwargs={"low": action_spec.space.low.to(device), "high": action_spec.space.high.to(device)},
        return_log_prob=True,
    )


def make_collector(ctx: BuildContext, policy: nn.Module) -> Collector | DirectCollector:
    """A synchronous single-process collector: env on CPU, policy on ``ctx.device``.

    xdrl's :class:`~xdrl.builder.collection.DirectCollector` when ``ctx.collector_implementation``
    is ``xdrl`` and it supports the env (a gymnasium vector env of a single-objective task),
    otherwise TorchRL's ``Collector``.
    """
    if ctx.collector_implementation == "xdrl":
        env = ctx.make_env(vector_of_one=True)
        if supports(env):
            return DirectCollector(
                env,
                policy,
                frames_per_batch=ctx.frames_per_batch,
                total_frames=ctx.total_frames,
                init_random_frames=ctx.init_random_frames,
                device=ctx.device,
                # One env: batches of [frames], as TorchRL's collector yields for a plain GymEnv.
                single_env=tuple(env.batch_size) == (1,),
            )
        env.close()
    env = ctx.make_env()
    return Collector(
        env,
        policy,
        frames_per_batch=ctx.frames_per_batch,
        total_frames=ctx.total_frames,
        init_random_frames=ctx.init_random_frames or None,
        env_device="cpu",
        policy_device=ctx.device,
        storing_device=ctx.device,
        auto_register_policy_transforms=False,
    )


def make_trainer(
    ctx: BuildContext,
    *,
    collector: Collector,
    loss_module: LossModule,
    optimizer: torch.optim.Optimizer,
    optim_steps_per_batch: int,
    clip_norm: float,
    num_epochs: int = 1,
    replay_buffer: ReplayBuffer | None = None,
    target_net_updater: TargetNetUpdater | None = None,
) -> Trainer:
    """TorchRL's base ``Trainer`` with xdrl's shared settings; each algorithm registers its own hooks on it.

    Every optimisation step is TorchRL's ``DefaultOptimizationStepper``: the sum of the
    ``loss*`` entries is back-propagated, the gradient norm clipped to ``clip_norm`` and
    logged as ``grad_norm``, the optimizer stepped. TorchRL registers no logging hook on
    the base trainer (the xdrl hook set does the logging), and every metric reaches the
    logger every iteration (``log_interval=0``).
    """
    return Trainer(
        collector=collector,
        total_frames=ctx.total_frames,
        frame_skip=1,
        optim_steps_per_batch=optim_steps_per_batch,
        loss_module=loss_module,
        optimizer=optimizer,
        optimization_stepper=DefaultOptimizationStepper(),
        replay_buffer=replay_buffer,
        target_net_updater=target_net_updater,
        logger=ctx.logger,
        clip_norm=clip_norm,
        progress_bar=ctx.progress_bar,
        seed=ctx.seed,
        log_interval=0,
        num_epochs=num_epochs,
        auto_log_optim_steps=False,
    )


#: What an off-policy loss reads from a stored transition (DQN, SAC with its TD(0) targets).
TRANSITION_KEYS = (
    "observation",
    "action",
    ("next", "observation"),
    ("next", "reward"),
    ("next", "done"),
    ("next", "terminated"),
)


def register_replay_buffer(
    trainer: Trainer, buffer: ReplayBuffer, stage: str | None = "pre_epoch", keys: Sequence[Any] | None = None
) -> ReplayBufferTrainer:
    """Batches go into ``buffer`` (at ``stage``, if any); every optimisation step samples it (``process_optim_batch``).

    With ``stage=None`` the caller registers the returned hook's ``extend`` itself. With
    ``keys``, only those entries are stored: every sample then gathers only what the loss
    reads, and checkpoints hold a smaller buffer.
    TorchRL's algorithm trainers also register ``update_priority`` at ``post_loss``, a
    stage TorchRL 0.14.1 deprecates. xdrl's buffers are plain ``ReplayBuffer``s with
    non-prioritized samplers, for which it does nothing, so it is left out.
    """
    sampling = ReplayBufferTrainer(
        buffer,
        batch_size=None,
        flatten_tensordicts=True,
        memmap=False,
        device=buffer.storage.device,
        # Not ``iterate``: its iterator ends after one pass without replacement, and the
        # StopIteration it then raises ends the trainer's next epoch before its first step,
        # so PPO trained every other epoch (10 updates per batch for the preset's 20).
        # ``sample`` starts the next pass of a without-replacement sampler by itself.
        iterate=False,
    )
    if stage is not None:
        extend = sampling.extend if keys is None else lambda batch: sampling.extend(batch.select(*keys))
        trainer.register_op(stage, extend)
    trainer.register_op("process_optim_batch", sampling.sample)
    return sampling


def register_target_updates(trainer: Trainer, updater: TargetNetUpdater) -> None:
    """Step the target networks after every optimisation step (``post_optim``)."""
    trainer.register_op("post_optim", TargetNetUpdaterHook(updater))


def register_weight_updates(trainer: Trainer, trained: nn.Module) -> None:
    """Give the collector's policy the weights of ``trained`` after each iteration (``post_steps``)."""
    weights = functools.partial(TensorDict.from_module, trained)
    trainer.register_op("post_steps", UpdateWeights(trainer.collector, 1, policy_weights_getter=weights))
