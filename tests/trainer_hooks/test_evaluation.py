import functools

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.envs import GymEnv, ParallelEnv, SerialEnv
from torchrl.envs.utils import ExplorationType, exploration_type
from torchrl.record.loggers.csv import CSVLogger

from tests.helpers import TINY
from tests.trainer_hooks.helpers import CountingSerialEnv, cartpole_env
from xdrl.builder.experiment import build
from xdrl.builder.metrics import read_metrics_file
from xdrl.config import compose_config, validate
from xdrl.trainer_hooks import LoggingEvaluationHookSet, LoggingEvaluationMetricsHook

REWARD = ("next", "reward")


class RecordingPolicy(TensorDictModule):
    """Always pushes left and remembers the exploration type it ran under."""

    def __init__(self):
        self.seen = []
        super().__init__(self._act, in_keys=["observation"], out_keys=["action"])

    def _act(self, observation):
        self.seen.append(exploration_type())
        action = torch.zeros(*observation.shape[:-1], 2, dtype=torch.int64)
        action[..., 0] = 1
        return action


def _hook(env, policy=None, **overrides):
    kwargs = dict(
        policy=policy,
        environment=env,
        group="agents",
        metric_subgroup="deterministic",
        interval_frames=250,
        max_steps=500,
        deterministic=True,
        render=False,
        video_fps=15,
        reward_key=REWARD,
    )
    kwargs.update(overrides)
    return LoggingEvaluationMetricsHook(**kwargs)


def test_runs_every_interval_frames_and_reports_one_episode():
    policy = RecordingPolicy()
    hook = _hook(cartpole_env(), policy)
    results = [hook(TensorDict(batch_size=[100])) for _ in range(6)]  # frames 100 .. 600
    due = [bool(r) for r in results]
    assert due == [False, False, True, False, True, False]  # crossing 250 and 500
    metrics = results[2]
    # CartPole pays 1 per step: the episode's return equals its length.
    assert metrics["eval/deterministic/reward/episode_reward"] == metrics["eval/deterministic/episode_length"]
    assert 5 <= metrics["eval/deterministic/episode_length"] < 500  # always-left falls quickly
    assert metrics["timers/eval/deterministic/evaluation_time"] > 0
    assert set(policy.seen) == {ExplorationType.DETERMINISTIC}


def test_non_deterministic_variant_uses_random_exploration_and_max_steps():
    policy = RecordingPolicy()
    hook = _hook(cartpole_env(), policy, deterministic=False, metric_subgroup="explore", max_steps=3)
    metrics = hook.evaluate(step=0)
    assert set(policy.seen) == {ExplorationType.RANDOM}
    assert metrics["eval/explore/episode_length"] == 3


def test_batched_environment_counts_first_episode_of_each_env():
    env = SerialEnv(3, lambda: cartpole_env())
    hook = _hook(env, RecordingPolicy(), max_steps=60, reduce_stats=True)
    metrics = hook.evaluate(step=0)
    lengths = metrics["eval/deterministic/episode_length_min"], metrics["eval/deterministic/episode_length_max"]
    assert all(5 <= value < 60 for value in lengths)
    assert metrics["eval/deterministic/reward/episode_reward_mean"] == metrics["eval/deterministic/episode_length_mean"]
    env.close()


def test_render_returning_none_raises():
    env = cartpole_env(render=False)  # no render_mode: gymnasium's render() returns None
    hook = _hook(env, RecordingPolicy(), render=True, max_steps=5, logger=CSVLogger("x", log_dir="/tmp/unused"))
    with pytest.warns(UserWarning):  # gymnasium warns about the missing render_mode first
        with pytest.raises(RuntimeError, match=r"render\(\) returned None"):
            hook.evaluate(step=0)


def test_render_logs_video_through_logger_before_registration(tmp_path):
    logger = CSVLogger("eval", log_dir=str(tmp_path))
    hook = _hook(cartpole_env(render=True), RecordingPolicy(), render=True, max_steps=4, logger=logger)
    metrics = hook.evaluate(step=1234)
    files = list(tmp_path.rglob("*.pt"))
    assert [f.name for f in files] == ["video_1234.pt"]
    video = torch.load(files[0], weights_only=True)
    steps = int(metrics["eval/deterministic/episode_length"])
    assert video.shape == (1, steps, 3, 400, 600)
    assert video.dtype == torch.uint8 and video.float().std() > 0


def test_standalone_call_logs_scalars_directly(tmp_path):
    logger = CSVLogger("direct", log_dir=str(tmp_path))
    hook = _hook(cartpole_env(), RecordingPolicy(), interval_frames=10, logger=logger)
    hook(TensorDict(batch_size=[10]))
    scalar_file = tmp_path / "direct" / "scalars" / "eval" / "deterministic" / "episode_length.csv"
    step, value = scalar_file.read_text().strip().split(",")
    assert int(step) == 10 and float(value) >= 5


def test_hook_set_builds_variants_runs_them_together_and_round_trips():
    env = cartpole_env()
    kwargs = dict(
        policy=RecordingPolicy(),
        environment=env,
        group="agents",
        interval_frames=100,
        max_steps=50,
        render=False,
        video_fps=15,
        reward_key=REWARD,
    )
    both = LoggingEvaluationHookSet(deterministic=True, non_deterministic=True, **kwargs)
    assert [h.metric_subgroup for h in both.hooks] == ["deterministic", "non_deterministic"]
    metrics = both(TensorDict(batch_size=[100]))
    assert "eval/deterministic/episode_length" in metrics and "eval/non_deterministic/episode_length" in metrics
    restored = LoggingEvaluationHookSet(deterministic=True, non_deterministic=True, **kwargs)
    restored.load_state_dict(both.state_dict())
    assert [h._evaluations for h in restored.hooks] == [1, 1]
    both.close()
    assert env.is_closed
    assert LoggingEvaluationHookSet(deterministic=False, non_deterministic=False, **kwargs).hooks == []


@pytest.mark.slow
def test_parallel_env_is_accepted_by_rollout():
    env = ParallelEnv(2, functools.partial(GymEnv, "CartPole-v1"))
    hook = _hook(env, None, deterministic=False, max_steps=20)
    metrics = hook.evaluate(step=0)
    assert 1 <= metrics["eval/deterministic/episode_length_mean"] <= 20
    env.close()


# --- close(): closes the environment, any number of times ------------------------------------------------------------


class FlaglessEnv:
    """A rollout-capable env without TorchRL's is_closed flag: it must be closed once, by the hook's own record."""

    def __init__(self):
        self.env = cartpole_env()
        self.batch_size = self.env.batch_size
        self.close_calls = 0

    def rollout(self, *args, **kwargs):
        return self.env.rollout(*args, **kwargs)

    def close(self):
        self.close_calls += 1
        self.env.close()


def test_metrics_hook_close_is_idempotent_on_a_started_batched_env():
    env = CountingSerialEnv(2, cartpole_env)
    hook = _hook(env, RecordingPolicy(), max_steps=5)
    hook.evaluate(step=0)  # starts the workers
    assert not env.is_closed
    hook.close()
    hook.close()  # a second close of a SerialEnv would raise "trying to close a closed environment"
    assert env.is_closed and env.close_calls == 1


def test_metrics_hook_close_skips_an_env_closed_elsewhere_and_closes_a_flagless_env_once():
    env = CountingSerialEnv(2, cartpole_env)
    hook = _hook(env, RecordingPolicy(), max_steps=5)
    hook.evaluate(step=0)
    env.close()  # e.g. the trainer's shutdown stage, or the owner of the env
    hook.close()
    assert env.close_calls == 1

    flagless = FlaglessEnv()
    hook = _hook(flagless, RecordingPolicy(), max_steps=5)
    assert hook.evaluate(step=0)["eval/deterministic/episode_length"] == 5
    hook.close()
    hook.close()
    assert flagless.close_calls == 1 and flagless.env.is_closed


@pytest.mark.parametrize(("deterministic", "non_deterministic"), [(True, True), (False, False)])
def test_hook_set_close_closes_the_env_once_even_without_variants(deterministic, non_deterministic):
    flagless = FlaglessEnv()
    kwargs = dict(group="agents", interval_frames=100, max_steps=5, render=False, video_fps=15, reward_key=REWARD)
    hooks = LoggingEvaluationHookSet(
        policy=RecordingPolicy(),
        environment=flagless,
        deterministic=deterministic,
        non_deterministic=non_deterministic,
        **kwargs,
    )
    hooks.close()
    hooks.close()
    for hook in hooks.hooks:
        hook.close()
    assert flagless.close_calls == 1 and flagless.env.is_closed


def test_hook_set_close_after_the_trainer_shutdown_stage(tmp_path):
    experiment = _build_with_eval(tmp_path)
    eval_set = experiment.hooks.eval_hook_set
    env = eval_set.environment
    assert [hook.environment for hook in eval_set.hooks] == [env]
    calls = []
    original_close = env.close
    env.close = lambda **kwargs: calls.append(kwargs) or original_close(**kwargs)
    experiment.trainer.train()  # the shutdown stage closes the evaluation env
    assert env.is_closed and len(calls) == 1
    rows = read_metrics_file(tmp_path / "metrics.jsonl")
    eval_lengths = [
        row["eval/deterministic/episode_length_mean"] for row in rows if "eval/deterministic/episode_length_mean" in row
    ]
    assert len(eval_lengths) == 2 and all(1 <= length <= 50 for length in eval_lengths)  # it ran before closing

    eval_set.close()
    eval_set.hooks[0].close()
    eval_set.close()
    assert len(calls) == 1


def _build_with_eval(tmp_path):
    overrides = ["experiment=cartpole_ppo", *TINY["cartpole_ppo"], "hooks.policy_checkpoint.interval=0", "logger=none"]
    return build(validate(compose_config(overrides)), "cpu", output_dir=tmp_path)
