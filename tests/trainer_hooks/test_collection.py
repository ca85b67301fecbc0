import pytest
import torch
from tensordict import TensorDict

from xdrl.trainer_hooks import LoggingCollectionMetricsHook

SINGLE = {"reward_key": ("next", "reward"), "episode_reward_key": ("next", "episode_reward")}


def _batch(reward, episode_reward, done, mask=None):
    data = {
        "next": {
            "reward": torch.tensor(reward, dtype=torch.float32),
            "episode_reward": torch.tensor(episode_reward, dtype=torch.float32),
            "done": torch.tensor(done).unsqueeze(-1),
        }
    }
    batch_size = list(torch.tensor(done).shape)
    if mask is not None:
        data["collector"] = {"mask": torch.tensor(mask)}
    return TensorDict(data, batch_size=batch_size)


def test_scalar_reward_statistics_and_finished_episodes():
    batch = _batch([[1.0], [2.0], [3.0], [4.0]], [[1.0], [3.0], [3.0], [7.0]], [False, True, False, True])
    metrics = LoggingCollectionMetricsHook(**SINGLE)(batch)
    assert metrics["collection/reward/reward_mean"] == 2.5
    assert metrics["collection/reward/reward_min"] == 1.0
    assert metrics["collection/reward/reward_max"] == 4.0
    assert metrics["collection/reward/episode_reward_mean"] == 5.0  # episodes ending at 3.0 and 7.0
    assert metrics["collection/done_rate"] == 0.5
    assert not any(key.startswith("collection/agents/") for key in metrics)


def test_zero_done_logs_no_episode_reward():
    batch = _batch([[1.0], [1.0]], [[1.0], [2.0]], [False, False])
    metrics = LoggingCollectionMetricsHook(**SINGLE)(batch)
    assert metrics["collection/done_rate"] == 0.0
    assert not any("episode_reward" in key for key in metrics)


def test_collector_mask_drops_padding():
    # Two trajectories of length 3 padded by the collector; padded frames carry junk.
    reward = [[[1.0], [1.0], [100.0]], [[2.0], [100.0], [100.0]]]
    episode = [[[1.0], [2.0], [100.0]], [[2.0], [100.0], [100.0]]]
    done = [[False, True, True], [True, True, True]]
    mask = [[True, True, False], [True, False, False]]
    metrics = LoggingCollectionMetricsHook(**SINGLE)(_batch(reward, episode, done, mask))
    assert metrics["collection/reward/reward_max"] == 2.0
    assert metrics["collection/reward/reward_mean"] == pytest.approx(4.0 / 3.0)
    assert metrics["collection/reward/episode_reward_mean"] == 2.0  # episodes 2.0 and 2.0
    assert metrics["collection/done_rate"] == pytest.approx(2.0 / 3.0)


def test_vector_reward_is_scalarized_with_weights():
    reward = [[1.0, -1.0], [0.0, -1.0], [5.0, -1.0]]
    episode = [[1.0, -1.0], [1.0, -2.0], [6.0, -3.0]]
    batch = _batch(reward, episode, [False, False, True])
    metrics = LoggingCollectionMetricsHook(episode_reward_weights=[1.0, 0.5], reduce_stats=False, **SINGLE)(batch)
    assert metrics["collection/reward/reward"] == pytest.approx((0.5 - 0.5 + 4.5) / 3)
    assert metrics["collection/reward/episode_reward"] == pytest.approx(6.0 - 1.5)
    assert metrics["collection/reward/objective_0/episode_reward"] == 6.0
    assert metrics["collection/reward/objective_1/episode_reward"] == -3.0


def test_weight_count_mismatch_names_both_sizes():
    batch = _batch([[1.0, -1.0]], [[1.0, -1.0]], [True])
    hook = LoggingCollectionMetricsHook(episode_reward_weights=[1.0, 2.0, 3.0], **SINGLE)
    with pytest.raises(ValueError, match="has 3 entries but the reward has 2 objectives"):
        hook(batch)


def test_group_keys_log_per_group_and_global():
    # 2 frames, 3 agents: the group reward lives under ("next", "agents", ...).
    batch = TensorDict(
        {
            "next": {
                "done": torch.tensor([[False], [True]]),
                "agents": TensorDict(
                    {
                        "reward": torch.tensor([[[1.0], [2.0], [3.0]], [[4.0], [5.0], [6.0]]]),
                        "episode_reward": torch.tensor([[[1.0], [2.0], [3.0]], [[5.0], [7.0], [9.0]]]),
                    },
                    batch_size=[2, 3],
                ),
            }
        },
        batch_size=[2],
    )
    metrics = LoggingCollectionMetricsHook(group="agents")(batch)
    assert metrics["collection/agents/reward/reward_max"] == 6.0
    assert metrics["collection/agents/reward/reward_min"] == 1.0
    assert metrics["collection/reward/reward_min"] == 2.0  # agent-averaged frames: 2.0 and 5.0
    assert metrics["collection/agents/reward/episode_reward_mean"] == 7.0
    assert metrics["collection/reward/episode_reward"] == 7.0


def test_missing_key_error_lists_available_keys():
    batch = _batch([[1.0]], [[1.0]], [True])
    with pytest.raises(KeyError, match=r"\('next', 'agents', 'reward'\).*reward_key=\('next', 'reward'\)"):
        LoggingCollectionMetricsHook()(batch)
