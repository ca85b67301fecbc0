"""An MO-Gymnasium environment through TorchRL's gym wrapper, into the hooks, out of a real logger."""

import mo_gymnasium
import pytest
import torch
from torchrl.collectors import Collector
from torchrl.envs import GymWrapper, RewardSum, StepCounter, TransformedEnv
from torchrl.record.loggers.csv import CSVLogger
from torchrl.trainers import Trainer

from tests.trainer_hooks.helpers import read_csv_scalars
from xdrl.trainer_hooks import LoggingHookSet

WEIGHTS = [1.0, 0.5]


def test_vector_reward_is_scalarized_by_the_weights(tmp_path):
    env = TransformedEnv(GymWrapper(mo_gymnasium.make("deep-sea-treasure-v0")), RewardSum())
    env.append_transform(StepCounter(max_steps=50))
    env.set_seed(3)
    assert env.reward_spec.shape[-1] == 2  # (treasure, time penalty)
    collector = Collector(env, None, frames_per_batch=200, total_frames=1000)
    logger = CSVLogger("mo", log_dir=str(tmp_path))
    # A real trainer that only collects: no optimisation steps.
    trainer = Trainer(
        collector=collector,
        total_frames=1000,
        frame_skip=1,
        optim_steps_per_batch=0,
        loss_module=torch.nn.Identity(),
        logger=logger,
        log_interval=0,
        progress_bar=False,
    )
    batches = []
    trainer.register_op("batch_process", lambda batch: batches.append(batch.clone()) or batch)
    LoggingHookSet(
        group="agents",
        frame_skip=1,
        reward_key=("next", "reward"),
        episode_reward_key=("next", "episode_reward"),
        episode_reward_weights=WEIGHTS,
        reduce_stats=True,
    ).register(trainer)
    trainer.train()

    scalars = read_csv_scalars(tmp_path, "mo")
    logged = dict(scalars["collection/reward/episode_reward_mean"])
    per_objective = [dict(scalars[f"collection/reward/objective_{i}/episode_reward_mean"]) for i in range(2)]
    step_reward = dict(scalars["collection/reward/reward_mean"])
    assert logged, "the random policy should finish episodes within 1000 frames"
    for index, batch in enumerate(batches):
        frames = 200 * (index + 1)
        rewards = batch["next", "reward"].tolist()
        assert step_reward[frames] == pytest.approx(sum(r[0] * 1.0 + r[1] * 0.5 for r in rewards) / len(rewards))
        done = batch["next", "done"].squeeze(-1)
        returns = batch["next", "episode_reward"][done].tolist()  # [treasure, -steps] of finished episodes
        if not returns:
            assert frames not in logged
            continue
        expected = sum(treasure * 1.0 + time * 0.5 for treasure, time in returns) / len(returns)
        assert logged[frames] == pytest.approx(expected)
        assert per_objective[0][frames] == pytest.approx(sum(r[0] for r in returns) / len(returns))
        assert per_objective[1][frames] == pytest.approx(sum(r[1] for r in returns) / len(returns))
