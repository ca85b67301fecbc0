"""xdrl's own collector (``collector.implementation=xdrl``) against gymnasium and TorchRL's collector.

Every batch is replayed in a second gymnasium vector env with the batch's own actions: each
observation, reward, done flag, step count, episode return and trajectory id must be what
stepping gymnasium gives. The layout (keys, shapes, dtypes) must be TorchRL's collector's, and
either collector must load the other's state.
"""

import gymnasium
import numpy as np
import pytest
import torch
from tensordict import TensorDict
from torchrl.collectors import Collector
from torchrl.envs import ExplorationType, set_exploration_type

from tests.helpers import tiny
from xdrl.builder.collection import DirectCollector, direct_actor
from xdrl.builder.experiment import build_algorithm, prepare_process
from xdrl.config import compose_config, validate


def _parts(preset, *extra):
    validated = validate(compose_config(tiny(preset, "logger=none", *extra)))
    prepare_process(validated.config)
    return validated, build_algorithm(validated, "cpu")


def _batches(collector, count):
    batches = []
    for batch in collector:
        batches.append(batch)
        if len(batches) == count:
            break
    return batches


@pytest.mark.parametrize(
    ("preset", "extra"),
    [
        ("cartpole_ppo", ["env.num_envs=4", "collector.frames_per_batch=128", "algo.minibatch_size=64"]),
        (
            "cartpole_ppo",
            [
                "env.num_envs=3",
                "collector.frames_per_batch=96",
                "algo.minibatch_size=32",
                "env.normalize_observations=true",
                "hooks.eval.interval_frames=0",
            ],
        ),
        ("cartpole_dqn", ["env.num_envs=2", "collector.frames_per_batch=64", "collector.init_random_frames=64"]),
        (
            "pendulum_sac",
            [
                "env.num_envs=2",
                "env.max_episode_steps=30",
                "collector.frames_per_batch=40",
                "hooks.eval.interval_frames=0",
            ],
        ),
    ],
)
def test_every_batch_is_what_gymnasium_gives_for_its_actions(preset, extra):
    validated, parts = _parts(preset, "collector.total_frames=100000", *extra)
    collector = parts.trainer.collector
    assert isinstance(collector, DirectCollector)
    collector.set_seed(7)
    batches = _batches(collector, 4)
    config = validated.config.env
    kwargs = {} if config.max_episode_steps is None else {"max_episode_steps": config.max_episode_steps}
    reference = gymnasium.make_vec(
        config.id,
        num_envs=config.num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gymnasium.vector.AutoresetMode.DISABLED},
        **kwargs,
    )
    reference.reset(seed=7)  # TorchRL's seeding of the env: a seeded reset
    raw, _ = reference.reset()  # the collector's first batch starts new episodes
    loc, scale = (0.0, 1.0) if collector._norm is None else collector._norm
    returns, counts = np.zeros(config.num_envs), np.zeros(config.num_envs, dtype=np.int64)
    ids, next_id = np.arange(config.num_envs), config.num_envs
    ends = 0
    for batch in batches:
        for t in range(batch.shape[1]):
            step = batch[:, t]
            expected = (torch.as_tensor(raw, dtype=torch.float32) - loc) / scale
            torch.testing.assert_close(step["observation"], expected)
            assert step["step_count"].squeeze(-1).tolist() == counts.tolist()
            np.testing.assert_allclose(step["episode_reward"].squeeze(-1).numpy(), returns, rtol=1e-5, atol=1e-4)
            assert step["collector", "traj_ids"].tolist() == ids.tolist()
            assert not step["done"].any() and not step["terminated"].any() and not step["truncated"].any()
            action = step["action"]
            action = action.argmax(-1).numpy() if reference.single_action_space.shape == () else action.numpy()
            raw, reward, terminated, truncated, _ = reference.step(action)
            returns, counts = returns + reward, counts + 1
            expected = (torch.as_tensor(raw, dtype=torch.float32) - loc) / scale
            torch.testing.assert_close(step["next", "observation"], expected)
            np.testing.assert_allclose(step["next", "reward"].squeeze(-1).numpy(), reward, rtol=1e-6)
            assert step["next", "terminated"].squeeze(-1).tolist() == terminated.tolist()
            assert step["next", "truncated"].squeeze(-1).tolist() == truncated.tolist()
            assert step["next", "done"].squeeze(-1).tolist() == (terminated | truncated).tolist()
            assert step["next", "step_count"].squeeze(-1).tolist() == counts.tolist()
            np.testing.assert_allclose(
                step["next", "episode_reward"].squeeze(-1).numpy(), returns, rtol=1e-5, atol=1e-4
            )
            done = terminated | truncated
            if done.any():
                ends += int(done.sum())
                raw, _ = reference.reset(options={"reset_mask": done})
                returns[done], counts[done] = 0.0, 0
                ids[done] = np.arange(next_id, next_id + int(done.sum()))
                next_id += int(done.sum())
    assert ends > 0  # the replay crossed episode ends (partial resets)
    if preset == "cartpole_dqn":  # random actions before init_random_frames (policy outputs zero), then the policy's
        assert [bool(batch["action_value"].any()) for batch in batches] == [False, True, True, True]
    collector.shutdown()


@pytest.mark.parametrize(
    ("preset", "extra"),
    [
        ("cartpole_ppo", []),
        ("cartpole_dqn", ["collector.init_random_frames=0"]),
        ("cartpole_dqn", ["collector.init_random_frames=256"]),
        ("pendulum_sac", []),
        ("cartpole_dqn", ["env.num_envs=1", "collector.init_random_frames=256"]),
    ],
)
def test_batches_have_torchrl_collectors_layout_and_state(preset, extra):
    _, ours = _parts(preset, *extra)
    _, theirs = _parts(preset, "collector.implementation=torchrl", *extra)
    assert isinstance(ours.trainer.collector, DirectCollector)
    assert type(theirs.trainer.collector) is Collector
    mine, reference = _batches(ours.trainer.collector, 1)[0], _batches(theirs.trainer.collector, 1)[0]
    assert mine.batch_size == reference.batch_size
    layout = {key: (value.shape, value.dtype) for key, value in mine.items(True, True)}
    assert layout == {key: (value.shape, value.dtype) for key, value in reference.items(True, True)}
    # Either collector loads the other's state (a run may switch implementation on resume).
    ours.trainer.collector.load_state_dict(theirs.trainer.collector.state_dict())
    theirs.trainer.collector.load_state_dict(ours.trainer.collector.state_dict())
    assert ours.trainer.collector.state_dict()["frames"] == theirs.trainer.collector.state_dict()["frames"]
    ours.trainer.collector.shutdown()
    theirs.trainer.collector.shutdown()


@pytest.mark.parametrize("extra", [["collector.implementation=torchrl"], ["collector.env_backend=serial"]])
def test_torchrl_collector_where_asked_or_where_ours_does_not_apply(extra):
    _, parts = _parts("cartpole_ppo", *extra)
    assert type(parts.trainer.collector) is Collector
    _, parts = _parts("deep_sea_treasure_ppo")  # multi-objective: TorchRL's collector and SerialEnv
    assert type(parts.trainer.collector) is Collector


@pytest.mark.parametrize("preset", ["cartpole_ppo", "pendulum_sac"])
def test_direct_actor_draws_what_the_actor_draws(preset):
    _, parts = _parts(preset)
    policy = parts.trainer.collector.policy
    act = direct_actor(policy)
    assert act is not None
    observation = torch.randn(16, parts.trainer.collector.env.observation_spec["observation"].shape[-1])
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        torch.manual_seed(3)
        expected = policy(TensorDict({"observation": observation}, batch_size=[16]))
        torch.manual_seed(3)
        outputs = act(observation)
    assert set(outputs) | {"observation"} == set(expected.keys())
    for key, value in outputs.items():
        torch.testing.assert_close(value, expected[key])
    parts.trainer.collector.shutdown()


def test_direct_actor_declines_other_policies():
    _, parts = _parts("cartpole_dqn")  # Q-values and epsilon-greedy: the TensorDict modules run
    assert direct_actor(parts.trainer.collector.policy) is None
    parts.trainer.collector.shutdown()
