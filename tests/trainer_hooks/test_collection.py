import pytest
import torch
from tensordict import TensorDict

from tests.helpers import TINY
from xdrl.builder.envs import EPISODE_VECTOR_REWARD
from xdrl.builder.experiment import build
from xdrl.builder.metrics import read_metrics_file
from xdrl.config import compose_config, validate
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


# --- the episode reward is optional; weights apply to vector rewards only -------------------------------------------


def test_missing_episode_reward_logs_step_metrics_and_skips_episode_metrics():
    batch = _batch([[1.0], [2.0], [6.0]], [[1.0], [3.0], [6.0]], [False, True, True])
    del batch["next", "episode_reward"]
    metrics = LoggingCollectionMetricsHook(reduce_stats=True, **SINGLE)(batch)
    assert metrics == {
        "collection/reward/reward_min": 1.0,
        "collection/reward/reward_mean": 3.0,
        "collection/reward/reward_max": 6.0,
        "collection/done_rate": pytest.approx(2.0 / 3.0),
    }


def test_missing_step_reward_still_raises_without_episode_reward():
    batch = _batch([[1.0]], [[1.0]], [True])
    del batch["next", "episode_reward"]
    hook = LoggingCollectionMetricsHook(reward_key=("next", "step_reward"), episode_reward_key=("next", "nowhere"))
    with pytest.raises(KeyError, match=r"\('next', 'step_reward'\) is not in the batch"):
        hook(batch)


@pytest.mark.parametrize("trailing_dim", [True, False], ids=["last_dim_1", "no_objective_dim"])
def test_scalar_step_reward_is_logged_as_is_despite_weights(trailing_dim):
    reward = torch.tensor([[2.0], [4.0], [9.0]])
    episode = [[2.0, -1.0], [6.0, -2.0], [9.0, -1.0]]
    batch = _batch(reward.tolist(), episode, [False, True, True])
    if not trailing_dim:
        batch["next", "reward"] = reward.squeeze(-1)  # shape (3,): the batch shape, no objective dimension
    metrics = LoggingCollectionMetricsHook(episode_reward_weights=[1.0, 0.5], reduce_stats=True, **SINGLE)(batch)
    assert metrics["collection/reward/reward_mean"] == pytest.approx(reward.mean().item())
    assert (metrics["collection/reward/reward_min"], metrics["collection/reward/reward_max"]) == (2.0, 9.0)
    assert not any(key.startswith("collection/reward/objective_") and key.endswith("/reward_mean") for key in metrics)
    # The weights still scalarize the vector episode return: 6 - 1 and 9 - 0.5.
    assert metrics["collection/reward/episode_reward_mean"] == pytest.approx((5.0 + 8.5) / 2)
    assert metrics["collection/reward/objective_1/episode_reward_mean"] == pytest.approx(-1.5)


def test_step_reward_without_objective_dim_is_not_split_into_objectives():
    # Without weights a (T,) reward used to count its T frames as T objectives.
    batch = _batch([[1.0], [2.0], [3.0], [6.0]], [[1.0], [3.0], [6.0], [6.0]], [False, False, True, False])
    batch["next", "reward"] = batch["next", "reward"].squeeze(-1)
    batch["next", "episode_reward"] = batch["next", "episode_reward"].squeeze(-1)
    metrics = LoggingCollectionMetricsHook(reduce_stats=False, **SINGLE)(batch)
    assert metrics == {
        "collection/reward/reward": 3.0,
        "collection/done_rate": 0.25,
        "collection/reward/episode_reward": 6.0,
    }


def test_scalar_episode_reward_with_weights_is_logged_as_is():
    batch = _batch([[1.0, 0.0], [3.0, -1.0]], [[1.0], [4.0]], [False, True])
    metrics = LoggingCollectionMetricsHook(episode_reward_weights=[2.0, 1.0], reduce_stats=False, **SINGLE)(batch)
    assert metrics["collection/reward/episode_reward"] == 4.0
    assert metrics["collection/reward/reward"] == pytest.approx((2.0 + 5.0) / 2)  # the vector step reward, weighted


def test_vector_episode_reward_size_mismatch_names_the_key():
    batch = _batch([[1.0]], [[1.0, -1.0, 0.0]], [True])
    hook = LoggingCollectionMetricsHook(episode_reward_weights=[1.0, 2.0], **SINGLE)
    with pytest.raises(
        ValueError, match=r"has 2 entries but the reward has 3 objectives \(key \('next', 'episode_reward'\)"
    ):
        hook(batch)


def test_group_reward_without_objective_dim_is_averaged_over_agents():
    # The group TensorDict has batch [frames, agents]: a (2, 3) reward has no objective dimension.
    batch = TensorDict(
        {
            "next": {
                "done": torch.tensor([[False], [True]]),
                "agents": TensorDict(
                    {"reward": torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])},
                    batch_size=[2, 3],
                ),
            }
        },
        batch_size=[2],
    )
    metrics = LoggingCollectionMetricsHook(group="agents", episode_reward_weights=[1.0, 1.0], reduce_stats=True)(batch)
    assert metrics["collection/reward/reward_mean"] == 3.5
    assert metrics["collection/reward/reward_min"] == 2.0
    assert metrics["collection/agents/reward/reward_max"] == 6.0
    assert "collection/reward/objective_0/reward_mean" not in metrics
    assert not any("episode_reward" in key for key in metrics)  # optional: absent from this batch


# --- on a real trainer built by the project's builder ---------------------------------------------------------------


def _build(tmp_path, preset, *overrides):
    validated = validate(
        compose_config(
            [f"experiment={preset}", *TINY[preset], "hooks.eval.interval_frames=0", "logger=none", *overrides]
        )
    )
    experiment = build(validated, "cpu", output_dir=tmp_path)
    batches = []
    experiment.trainer.register_op("batch_process", lambda batch: batches.append(batch.clone()) or batch)
    return experiment, batches


def test_real_trainer_without_episode_reward_logs_step_metrics(tmp_path):
    experiment, batches = _build(tmp_path, "cartpole_ppo")
    experiment.hooks.collection_hook.episode_reward_key = ("next", "no_such_episode_reward")
    experiment.trainer.train()

    rows = read_metrics_file(tmp_path / "metrics.jsonl")
    assert len(rows) == len(batches) == 2
    assert any(bool(batch["next", "done"].any()) for batch in batches)  # episodes did end
    for row, batch in zip(rows, batches, strict=True):
        assert row["collection/reward/reward_mean"] == pytest.approx(batch["next", "reward"].float().mean().item())
        assert row["collection/done_rate"] == pytest.approx(batch["next", "done"].float().mean().item())
        assert not any(key.startswith("collection/") and "episode_reward" in key for key in row)
        assert any(key.startswith("train/agents/loss") for key in row)  # training went on


def test_real_trainer_scalar_step_reward_with_weights(tmp_path):
    # deep-sea-treasure: ("next", "reward") is the scalarized reward (last dim 1), the episode return a 2-vector.
    experiment, batches = _build(tmp_path, "deep_sea_treasure_ppo")
    weights = list(experiment.config.env.reward_weights)
    hook = experiment.hooks.collection_hook
    assert hook.episode_reward_weights == weights == [1.0, 0.5]
    hook.reward_key = ("next", "reward")
    experiment.trainer.train()

    rows = read_metrics_file(tmp_path / "metrics.jsonl")
    assert len(rows) == len(batches) == 2
    finished = 0
    for row, batch in zip(rows, batches, strict=True):
        reward = batch["next", "reward"]
        assert reward.shape[-1] == 1
        assert row["collection/reward/reward_mean"] == pytest.approx(reward.mean().item(), rel=1e-5)
        assert row["collection/reward/reward_max"] == pytest.approx(reward.max().item())
        done = batch["next", "done"].squeeze(-1)
        returns = batch["next", EPISODE_VECTOR_REWARD][done].tolist()
        if not returns:
            assert "collection/reward/episode_reward_mean" not in row
            continue
        finished += len(returns)
        expected = sum(weights[0] * treasure + weights[1] * time for treasure, time in returns) / len(returns)
        assert row["collection/reward/episode_reward_mean"] == pytest.approx(expected, rel=1e-5)
        time_mean = sum(time for _, time in returns) / len(returns)
        assert row["collection/reward/objective_1/episode_reward_mean"] == pytest.approx(time_mean, rel=1e-5)
    assert finished, "episodes of at most 100 steps must end within 2 x 512 frames"
