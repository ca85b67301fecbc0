import pytest
import torch

from xdrl.builder.envs import make_env, observation_statistics
from xdrl.config.environments import inspect_env
from xdrl.config.schema import EnvConfig


def _config(env_id, weights=None, **kw):
    values = dict(
        id=env_id,
        reward_weights=weights,
        normalize_observations=False,
        max_episode_steps=None,
        num_envs=1,
        reference_point=None,
    )
    values.update(kw)
    return EnvConfig(**values)


@pytest.mark.parametrize(
    ("env_id", "discrete", "size"),
    [("Acrobot-v1", True, 3), ("MountainCarContinuous-v0", False, 1), ("mo-mountaincar-v0", True, 3)],
)
def test_any_installed_id_with_supported_spaces(env_id, discrete, size):
    weights = [1.0, 0.0, 0.0] if env_id.startswith("mo-") else None
    info = inspect_env(_config(env_id, weights))
    assert info.discrete == discrete
    assert (info.num_actions if discrete else info.action_dim) == size
    env = make_env(_config(env_id, weights, max_episode_steps=20), info, seed=0)
    rollout = env.rollout(25, break_when_any_done=False)
    assert rollout["next", "reward"].shape[-1] == 1
    assert rollout["next", "step_count"].max() <= 20


def test_multi_objective_reward_is_weighted_and_kept_per_objective():
    config = _config("deep-sea-treasure-v0", [1.0, 0.5], num_envs=2, max_episode_steps=30)
    env = make_env(config, inspect_env(config), seed=1)
    rollout = env.rollout(40, break_when_any_done=False)
    vector, scalar = rollout["next", "vector_reward"], rollout["next", "reward"]
    torch.testing.assert_close(scalar.squeeze(-1), vector[..., 0] + 0.5 * vector[..., 1])
    done = rollout["next", "done"].squeeze(-1)
    returns = rollout["next", "episode_vector_reward"][done]
    torch.testing.assert_close(rollout["next", "episode_reward"][done].squeeze(-1), returns[:, 0] + 0.5 * returns[:, 1])
    # Time penalty: the second objective of a finished episode is minus its length.
    torch.testing.assert_close(returns[:, 1], -rollout["next", "step_count"][done].squeeze(-1).float())


def test_observation_normalisation_uses_fixed_statistics():
    config = _config("CartPole-v1", normalize_observations=True)
    info = inspect_env(config)
    loc, scale = observation_statistics(config, info, seed=0)
    again = observation_statistics(config, info, seed=0)
    torch.testing.assert_close(loc, again[0])
    env = make_env(config, info, seed=0, observation_norm=(loc, scale))
    observations = env.rollout(500, break_when_any_done=False)["observation"]
    assert observations.mean(0).abs().max() < 1.0


@pytest.mark.parametrize("backend", ["vector", "serial"])
def test_batched_backends_play_every_episode_to_its_true_end(backend):
    # Episodes capped at 30 steps end at 30 at the latest; a partial reset restarts only the envs
    # that finished, so every episode's return is its length (CartPole pays 1 per step), and the
    # transition into a last step carries the true observation (next observation of step t is the
    # observation of step t+1 unless t ended an episode).
    config = _config("CartPole-v1", num_envs=4, max_episode_steps=30)
    env = make_env(config, inspect_env(config), seed=3, backend=backend)
    if backend == "vector":
        assert type(env.base_env).__name__ == "GymWrapper" and env.batch_size == (4,)
    rollout = env.rollout(100, break_when_any_done=False)
    done = rollout["next", "done"].squeeze(-1)
    lengths = rollout["next", "step_count"][done].squeeze(-1)
    assert done.sum() >= 8 and lengths.max() <= 30 and (lengths == 30).any()
    torch.testing.assert_close(rollout["next", "episode_reward"][done].squeeze(-1), lengths.float())
    steps = rollout["step_count"].squeeze(-1)
    starts = torch.nn.functional.pad(done[:, :-1], (1, 0), value=True)  # first step of each episode
    assert (steps[starts] == 0).all() and (steps[~starts] > 0).all()
    same = ~done[:, :-1]
    torch.testing.assert_close(rollout["next", "observation"][:, :-1][same], rollout["observation"][:, 1:][same])


def test_vector_backend_steps_multi_objective_envs_serially():
    config = _config("deep-sea-treasure-v0", [1.0, 0.5], num_envs=2)
    env = make_env(config, inspect_env(config), seed=1, backend="vector")
    assert "SerialEnv" in type(env.base_env).__name__
    assert env.rollout(5, break_when_any_done=False)["next", "vector_reward"].shape == (2, 5, 2)
