"""The full hook set on the builder's TorchRL trainers (PPO and DQN on CartPole-v1)."""

import pytest
import torch
from tensordict import TensorDict

from tests.trainer_hooks.helpers import (
    CountingSerialEnv,
    cartpole_dqn,
    cartpole_env,
    cartpole_ppo,
    read_csv_scalars,
    validated,
)
from xdrl.builder.experiment import build
from xdrl.builder.metrics import read_metrics_file
from xdrl.config import compose_config, validate
from xdrl.trainer_hooks import LoggingEvaluationHookSet, LoggingHookSet

ALGOS = {
    "ppo": (cartpole_ppo, {"total_frames": 1024, "frames_per_batch": 256}),
    "dqn": (cartpole_dqn, {"total_frames": 512, "frames_per_batch": 128}),
}
EXPECTED_LOSSES = {
    "ppo": {"train/agents/loss_objective", "train/agents/loss_critic", "train/agents/loss_entropy"},
    "dqn": {"train/agents/loss"},
}


def _build(output_dir, algo, total_frames=None):
    """``build()`` of the preset at a test budget: CSV logger, policy files every 2 iterations, eval every 2 batches."""
    overrides, sizes = ALGOS[algo]
    frames_per_batch = sizes["frames_per_batch"]
    config = overrides(
        total_frames or sizes["total_frames"],
        frames_per_batch,
        "hooks.policy_checkpoint.interval=2",
        f"hooks.eval.interval_frames={frames_per_batch * 2}",
        "hooks.eval.max_steps=100",
        logger="csv",
    )
    return build(validated(config), "cpu", output_dir=output_dir)


def _run(tmp_path, algo, save_to=None):
    experiment = _build(tmp_path, algo)
    trainer = experiment.trainer
    if save_to is not None:
        # The trainer shuts its collector down when train() returns; save while it runs.
        trainer.register_op("post_steps_log", lambda _batch: torch.save(trainer.state_dict(), save_to))
    trainer.train()
    return trainer, experiment.hooks, read_csv_scalars(tmp_path, "csv")


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_metrics_reaching_the_logger(tmp_path, algo):
    trainer, _, scalars = _run(tmp_path, algo)
    frames_per_batch = ALGOS[algo][1]["frames_per_batch"]
    iterations = trainer.total_frames // frames_per_batch
    every_iteration = {
        "collection/reward/reward_mean",
        "collection/done_rate",
        "counters/current_frames",
        "counters/total_frames",
        "counters/iter",
        "timers/collection_time",
        "timers/training_time",
        "timers/iteration_time",
        "timers/total_time",
        "progress/frames_fraction",
        "train/optim_steps",
    } | EXPECTED_LOSSES[algo]
    for name in every_iteration:
        assert [step for step, _ in scalars[name]] == [frames_per_batch * (i + 1) for i in range(iterations)], name
    assert all(not name.startswith(("r_", "optim_steps", "loss")) for name in scalars)  # no TorchRL defaults

    # Counters equal the trainer's own frame count, iteration by iteration.
    assert [v for _, v in scalars["counters/total_frames"]] == [s for s, _ in scalars["counters/total_frames"]]
    assert scalars["counters/total_frames"][-1][1] == trainer.collected_frames
    assert [v for _, v in scalars["counters/iter"]] == list(range(1, iterations + 1))
    # CartPole pays +1 per step.
    assert {v for _, v in scalars["collection/reward/reward_mean"]} == {1.0}
    # Episode returns of CartPole are episode lengths: at least 8 steps, at most 500.
    for _, value in scalars["collection/reward/episode_reward_mean"]:
        assert 8 <= value <= 500
    # Timers add up.
    total = 0.0
    for (_, it), (_, tot) in zip(scalars["timers/iteration_time"], scalars["timers/total_time"], strict=True):
        total += it
        assert tot == pytest.approx(total)
    # Evaluation every two batches, one scalar per evaluation.
    eval_steps = [s for s, _ in scalars["eval/deterministic/reward/episode_reward_mean"]]
    assert eval_steps == [frames_per_batch * 2 * (i + 1) for i in range(iterations // 2)]
    assert scalars["eval/deterministic/reward/episode_reward_mean"] == scalars["eval/deterministic/episode_length_mean"]


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_policy_checkpoints_hold_the_policy(tmp_path, algo):
    trainer, _, _ = _run(tmp_path, algo)
    files = sorted((tmp_path / "policies").iterdir())
    iterations = trainer.total_frames // ALGOS[algo][1]["frames_per_batch"]
    assert [f.name for f in files] == [f"policy_step_{n:08d}.pt" for n in range(2, iterations + 1, 2)]
    last = torch.load(files[-1], weights_only=True)
    policy = trainer.loss_module.actor_network if algo == "ppo" else trainer.loss_module.value_network
    for name, value in policy.state_dict().items():
        torch.testing.assert_close(last["policy_state_dict"][name], value)
    assert last["collected_frames"] == trainer.collected_frames


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_trainer_checkpoint_round_trips_all_hook_state(tmp_path, algo):
    path = tmp_path / "trainer.pt"
    first, first_hooks, _ = _run(tmp_path / "a", algo, save_to=path)

    sizes = ALGOS[algo][1]
    # The same experiment with twice the budget, in the same directory (its policy files continue there).
    rebuilt = _build(tmp_path / "a", algo, total_frames=sizes["total_frames"] * 2)
    second, second_hooks = rebuilt.trainer, rebuilt.hooks
    second.load_state_dict(torch.load(path, weights_only=True))
    assert second_hooks.state_dict() == first_hooks.state_dict()
    assert (
        second._modules["policy_checkpoint_hook"].state_dict() == first._modules["policy_checkpoint_hook"].state_dict()
    )

    second.train()  # continues: counters and checkpoint numbering go on
    assert second_hooks.counters_hook.total_frames == second.collected_frames == 2 * first.collected_frames
    iterations = second.collected_frames // sizes["frames_per_batch"]
    assert second_hooks.counters_hook.iteration == iterations
    names = sorted(p.name for p in (tmp_path / "a" / "policies").iterdir())
    assert names == [f"policy_step_{n:08d}.pt" for n in range(2, iterations + 1, 2)]
    assert second_hooks._total_time > first_hooks._total_time


# --- close(): the evaluation hook set too, any number of times --------------------------------------------------------


def test_close_closes_the_evaluation_hook_set_once():
    env = CountingSerialEnv(2, cartpole_env)
    eval_set = LoggingEvaluationHookSet(
        policy=None,
        environment=env,
        group="agents",
        interval_frames=10,
        max_steps=5,
        deterministic=False,
        non_deterministic=True,
        render=False,
        video_fps=15,
        reward_key=("next", "reward"),
    )
    hooks = LoggingHookSet(group="agents", frame_skip=1, reward_key=("next", "reward"), eval_hook_set=eval_set)
    metrics = eval_set(TensorDict(batch_size=[10]))  # starts the env's workers
    assert 1 <= metrics["eval/non_deterministic/episode_length_mean"] <= 5
    hooks.close()
    hooks.close()  # a second SerialEnv.close() would raise
    eval_set.close()
    assert env.is_closed and env.close_calls == 1
    LoggingHookSet(group="agents", frame_skip=1).close()  # no evaluation hook set: nothing to do


def test_close_after_a_real_trainer_shut_down(tmp_path):
    overrides = [
        "experiment=cartpole_ppo",
        "collector.total_frames=256",
        "hooks.eval.interval_frames=256",
        "hooks.eval.max_steps=20",
        "hooks.policy_checkpoint.interval=0",
        "logger=none",
    ]
    experiment = build(validate(compose_config(overrides)), "cpu", output_dir=tmp_path)
    env = experiment.hooks.eval_hook_set.environment
    calls = []
    original_close = env.close
    env.close = lambda **kwargs: calls.append(kwargs) or original_close(**kwargs)
    experiment.trainer.train()
    assert env.is_closed and len(calls) == 1  # by the shutdown stage, as registered by LoggingHookSet.register
    (row,) = read_metrics_file(tmp_path / "metrics.jsonl")
    assert 1 <= row["eval/deterministic/episode_length_mean"] <= 20
    experiment.hooks.close()
    experiment.hooks.close()
    assert len(calls) == 1
