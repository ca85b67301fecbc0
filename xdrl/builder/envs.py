"""Environments from an :class:`~xdrl.config.schema.EnvConfig`, with the usual transforms."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.data import Unbounded
from torchrl.envs import (
    Compose,
    DTypeCastTransform,
    EnvBase,
    GymEnv,
    ObservationNorm,
    ParallelEnv,
    RewardSum,
    SerialEnv,
    StepCounter,
    Transform,
    TransformedEnv,
)

from xdrl.config.environments import EnvInfo, register_mo_gymnasium
from xdrl.config.schema import EnvConfig

OBSERVATION = "observation"
#: The per-objective reward of a multi-objective env and its running episode sum.
VECTOR_REWARD = "vector_reward"
EPISODE_VECTOR_REWARD = "episode_vector_reward"


class ScalarizeReward(Transform):
    """Replace a vector reward by its weighted sum, keeping the vector as ``vector_reward``.

    The loss sees the scalar ``reward``; ``vector_reward`` (an observation-like
    entry of ``next``) keeps every objective for the hooks.

    Args:
        weights: one weight per objective.
    """

    def __init__(self, weights: Sequence[float]) -> None:
        super().__init__(in_keys=["reward"], out_keys=["reward"])
        self.register_buffer("weights", torch.as_tensor(list(weights), dtype=torch.float32))

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        vector = next_tensordict.get("reward").to(torch.float32)
        next_tensordict.set(VECTOR_REWARD, vector)
        next_tensordict.set("reward", (vector * self.weights).sum(-1, keepdim=True))
        return next_tensordict

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        # Every observation entry must exist after a reset too (collectors preallocate from the specs).
        shape = (*tensordict_reset.batch_size, len(self.weights))
        tensordict_reset.set(VECTOR_REWARD, torch.zeros(shape, device=tensordict_reset.device))
        return tensordict_reset

    def transform_reward_spec(self, reward_spec: Any) -> Any:
        spec = reward_spec["reward"]
        reward_spec["reward"] = Unbounded(shape=(*spec.shape[:-1], 1), device=spec.device, dtype=torch.float32)
        return reward_spec

    def transform_observation_spec(self, observation_spec: Any) -> Any:
        reward_spec = self.parent.full_reward_spec["reward"] if self.parent is not None else None
        batch = tuple(observation_spec.shape)
        objectives = len(self.weights)
        device = reward_spec.device if reward_spec is not None else None
        observation_spec[VECTOR_REWARD] = Unbounded(shape=(*batch, objectives), device=device, dtype=torch.float32)
        return observation_spec


class EpisodeVectorReturn(Transform):
    """Running per-objective episode return ``episode_vector_reward`` (reset with the episode)."""

    def __init__(self, objectives: int) -> None:
        super().__init__(in_keys=[VECTOR_REWARD], out_keys=[EPISODE_VECTOR_REWARD])
        self.objectives = objectives

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        shape = (*tensordict_reset.batch_size, self.objectives)
        previous = tensordict.get(EPISODE_VECTOR_REWARD, None) if tensordict is not None else None
        fresh = torch.zeros(shape, device=tensordict_reset.device)
        reset = tensordict.get("_reset", None) if tensordict is not None else None
        if previous is not None and reset is not None:
            # Partial reset of batched envs: only the envs that start over lose their sum.
            fresh = torch.where(reset.reshape(*tensordict_reset.batch_size, 1), fresh, previous)
        tensordict_reset.set(EPISODE_VECTOR_REWARD, fresh)
        return tensordict_reset

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        previous = tensordict.get(EPISODE_VECTOR_REWARD, None)
        vector = next_tensordict.get(VECTOR_REWARD)
        if previous is None:
            previous = torch.zeros_like(vector)
        next_tensordict.set(EPISODE_VECTOR_REWARD, previous + vector)
        return next_tensordict

    def transform_observation_spec(self, observation_spec: Any) -> Any:
        batch = tuple(observation_spec.shape)
        observation_spec[EPISODE_VECTOR_REWARD] = Unbounded(shape=(*batch, self.objectives), dtype=torch.float32)
        return observation_spec


def _make_kwargs(config: EnvConfig, render: bool = False) -> dict[str, Any]:
    """What ``gymnasium.make`` (or ``make_vec``) gets besides the id, with MO-Gymnasium's ids registered."""
    register_mo_gymnasium()
    kwargs: dict[str, Any] = {}
    if config.max_episode_steps is not None:
        kwargs["max_episode_steps"] = config.max_episode_steps
    if render:
        kwargs["render_mode"] = "rgb_array"
    return kwargs


def _base_env(config: EnvConfig, render: bool) -> EnvBase:
    return GymEnv(config.id, **_make_kwargs(config, render))


def _float_base_env(config: EnvConfig, render: bool) -> EnvBase:
    """One env of a batch, its observations already float32.

    The cast sits inside each env of a ``SerialEnv``, not on top of the batch: TorchRL 0.14.1's
    ``SerialEnv`` fills the envs that sit out a partial step (evaluation episodes that ended
    first) from the transformed input, and a float observation there clashes with the env's
    integer one (deep-sea-treasure) in ``result[partial_steps] = out``.
    """
    env = _base_env(config, render)
    dtype = env.observation_spec[OBSERVATION].dtype
    if dtype == torch.float32:
        return env
    return TransformedEnv(env, DTypeCastTransform(dtype, torch.float32, in_keys=[OBSERVATION]))


def _vector_env(config: EnvConfig, num_envs: int) -> EnvBase:
    """Gymnasium's ``SyncVectorEnv`` of ``num_envs`` envs in this process, wrapped by TorchRL's ``GymWrapper``.

    One gymnasium call steps every env, and TorchRL builds one TensorDict per step for the
    batch instead of one per env (``SerialEnv``). Autoreset is off: TorchRL resets the envs
    that finished (partial reset), as with ``SerialEnv``, so the next observation of a last
    step is the true one.
    """
    import gymnasium
    from torchrl.envs import GymWrapper

    vector = gymnasium.make_vec(
        config.id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gymnasium.vector.AutoresetMode.DISABLED},
        **_make_kwargs(config),
    )
    return GymWrapper(vector, device="cpu")


def render_problem(config: EnvConfig) -> str | None:
    """Why the environment cannot render rgb frames (``render_mode="rgb_array"``), or ``None`` when it can.

    Checked on one gymnasium instance: ``rgb_array`` among its render modes, and a first frame.
    """
    import gymnasium

    register_mo_gymnasium()
    try:
        env = gymnasium.make(config.id, render_mode="rgb_array")
    except Exception as error:  # noqa: BLE001 - whatever the env's renderer raises (DependencyNotInstalled, ...)
        return f"{type(error).__name__}: {error}"
    try:
        modes = env.unwrapped.metadata.get("render_modes") or []
        if "rgb_array" not in modes:
            return f"its render modes are {', '.join(modes) or 'none'}"
        env.reset(seed=0)
        frame = env.render()
    except Exception as error:  # noqa: BLE001 - the reason becomes the user's one-line error
        return f"{type(error).__name__}: {error}"
    finally:
        env.close()
    return None if frame is not None else "render() returned no frame"


def make_env(
    config: EnvConfig,
    info: EnvInfo,
    *,
    seed: int,
    num_envs: int | None = None,
    render: bool = False,
    observation_norm: tuple[torch.Tensor, torch.Tensor] | None = None,
    backend: str = "serial",
    vector_of_one: bool = False,
) -> TransformedEnv:
    """A CPU environment with xdrl's transforms.

    Transforms, in order: float observations; for multi-objective envs the
    weighted scalar reward (``vector_reward`` kept) and its per-objective episode
    return; a step counter; the episode return ``episode_reward``; observation
    normalisation with fixed ``(loc, scale)`` when given.

    Args:
        config: the env config.
        info: what :func:`inspect_env` found.
        seed: environment seed.
        num_envs: environments stepped together (``config.num_envs`` by default).
        render: create the envs with ``render_mode="rgb_array"``.
        observation_norm: ``(loc, scale)`` for observation normalisation.
        backend: how several envs step together, one of :data:`xdrl.config.environments.ENV_BACKENDS` (rendering envs and
            multi-objective envs are serial with ``vector``).
        vector_of_one: with ``backend="vector"``, one env is a vector env of one too (batch size ``[1]``,
            what xdrl's own collector steps); otherwise one env is a plain ``GymEnv`` (batch size ``[]``).
    """
    num_envs = config.num_envs if num_envs is None else num_envs
    # gymnasium's vector envs hold one scalar reward per env: multi-objective envs step serially.
    vector = num_envs > 1 or vector_of_one
    if vector and backend == "vector" and not render and not info.multi_objective:
        base: EnvBase = _vector_env(config, num_envs)
    elif num_envs > 1 and backend == "parallel":
        base = ParallelEnv(num_envs, functools.partial(_float_base_env, config, render), mp_start_method="spawn")
    elif num_envs > 1:
        base = SerialEnv(num_envs, functools.partial(_float_base_env, config, render))
    else:
        base = _base_env(config, render)
    transforms: list[Transform] = []
    if base.observation_spec[OBSERVATION].dtype != torch.float32:
        dtype_in = base.observation_spec[OBSERVATION].dtype
        transforms.append(DTypeCastTransform(dtype_in, torch.float32, in_keys=[OBSERVATION]))
    if info.multi_objective:
        transforms += [ScalarizeReward(config.reward_weights), EpisodeVectorReturn(info.objectives)]
    transforms += [StepCounter(), RewardSum()]
    if observation_norm is not None:
        loc, scale = observation_norm
        transforms.append(
            ObservationNorm(loc=loc.clone(), scale=scale.clone(), in_keys=[OBSERVATION], standard_normal=True)
        )
    env = TransformedEnv(base, Compose(*transforms))
    env.set_seed(seed)
    return env


def observation_statistics(
    config: EnvConfig, info: EnvInfo, *, seed: int, frames: int = 2_000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of observations under a random policy (seeded, so reproducible)."""
    env = make_env(config, info, seed=seed, num_envs=1)
    # The random actions come from torch's generator: seed it here, without disturbing the caller's.
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        rollout = env.rollout(frames, break_when_any_done=False)
    env.close()
    observations = rollout.get(OBSERVATION).reshape(-1, info.observation_dim)
    return observations.mean(0), observations.std(0).clamp_min(1e-4)
