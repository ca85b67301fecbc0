"""What an environment id offers, checked with gymnasium before anything is built.

Importing MO-Gymnasium registers its ids in gymnasium's registry, so any gymnasium or
MO-Gymnasium id is found. No TorchRL here: the builder wraps the env later.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools

from xdrl.config.errors import ConfigError
from xdrl.config.schema import EnvConfig

#: ``collector.env_backend``: how the ``env.num_envs`` training environments step together.
ENV_BACKENDS = ("vector", "serial", "parallel")
#: ``collector.implementation``: xdrl's own collector (vector envs) or TorchRL's.
COLLECTOR_IMPLEMENTATIONS = ("xdrl", "torchrl")


@dataclasses.dataclass(frozen=True)
class EnvInfo:
    """What the builder needs to know about an env before building models."""

    env_id: str
    observation_dim: int
    discrete: bool
    num_actions: int | None  # discrete actions
    action_dim: int | None  # box actions
    objectives: int  # 1 for ordinary envs

    @property
    def multi_objective(self) -> bool:
        return self.objectives > 1


def registered_env_ids() -> list[str]:
    """Every id gymnasium knows, MO-Gymnasium's included."""
    import gymnasium

    register_mo_gymnasium()
    return sorted(gymnasium.registry)


@functools.cache
def register_mo_gymnasium() -> None:
    # Importing mo_gymnasium registers its ids in gymnasium's registry.
    import mo_gymnasium  # noqa: F401


def inspect_env(config: EnvConfig) -> EnvInfo:
    """Check that ``config`` names a usable environment and describe its spaces.

    Raises:
        ConfigError: unknown id, unsupported spaces, or reward weights that do not
            match the number of objectives.
    """
    import gymnasium
    from gymnasium import spaces

    ids = registered_env_ids()
    if config.id not in ids:
        close = difflib.get_close_matches(config.id, ids, n=3)
        hint = f" (close: {', '.join(close)})" if close else ""
        raise ConfigError("env.id", config.id, f"a registered gymnasium or MO-Gymnasium id{hint}")
    env = gymnasium.make(config.id)
    try:
        observation, action = env.observation_space, env.action_space
        reward_space = getattr(env.unwrapped, "reward_space", None)
    finally:
        env.close()
    if not isinstance(observation, spaces.Box) or len(observation.shape) != 1:
        raise ConfigError("env.id", config.id, f"an env with vector observations (this one has {observation})")
    if isinstance(action, spaces.Discrete):
        discrete, num_actions, action_dim = True, int(action.n), None
    elif isinstance(action, spaces.Box) and len(action.shape) == 1:
        discrete, num_actions, action_dim = False, None, int(action.shape[0])
    else:
        raise ConfigError("env.id", config.id, f"an env with discrete or 1-D box actions (this one has {action})")
    objectives = int(reward_space.shape[0]) if reward_space is not None and reward_space.shape else 1
    weights = config.reward_weights
    if objectives > 1 and weights is None:
        raise ConfigError(
            "env.reward_weights", None, f"{objectives} weights: {config.id} has {objectives} reward objectives"
        )
    if weights is not None and len(weights) != objectives:
        raise ConfigError(
            "env.reward_weights",
            list(weights),
            f"{objectives} weight{'s' if objectives > 1 else ''}: {config.id} has {objectives} reward objective"
            f"{'s' if objectives > 1 else ''} (null for single-objective envs)",
        )
    point = config.reference_point
    if point is not None and len(point) != objectives:
        raise ConfigError(
            "env.reference_point", list(point), f"{objectives} values, one per reward objective of {config.id}"
        )
    return EnvInfo(config.id, int(observation.shape[0]), discrete, num_actions, action_dim, objectives)
