"""``xdrl eval`` and warm starts (``init.policy``) on the files a real training run wrote.

One PPO CartPole run (20 iterations of 256 frames, evaluated at its end over 5 episodes)
is shared by the tests: it reaches a clear return (well above a random policy's ~20).
"""

from __future__ import annotations

import json
import pathlib
import shutil

import pytest
import torch
from PIL import Image

from xdrl import cli
from xdrl.config import compose_config, validate
from xdrl.records.lineage import METRICS_FILE, read_jsonl
from xdrl.records.runs import policy_files
from xdrl.records.wandb_files import find_run_files, read_run
from xdrl.trainer_hooks import LoggingEvaluationMetricsHook

EVAL_RETURN = "eval/deterministic/reward/episode_reward_mean"
SOURCE = [
    "experiment=cartpole_ppo",
    "collector.total_frames=5120",
    "hooks.eval.interval_frames=5120",
    "hooks.eval.episodes=5",
    "hooks.policy_checkpoint.interval=8",  # files at 8 and 16; the final one (20) is written at the end
    "logger=none",
]


def xdrl(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> pathlib.Path:
    directory = tmp_path_factory.mktemp("source") / "run"
    assert cli.main(["train", *SOURCE, f"output_dir={directory}", "--no-progress"]) == 0
    return directory


def last_evaluation(run: pathlib.Path) -> dict:
    return [row for row in read_jsonl(run / METRICS_FILE) if EVAL_RETURN in row][-1]


@pytest.mark.slow
def test_the_final_policy_is_written_between_intervals(source_run):
    assert [p.name for p in policy_files(source_run)] == [
        "policy_step_00000008.pt",
        "policy_step_00000016.pt",
        "policy_step_00000020.pt",
    ]
    payload = torch.load(policy_files(source_run)[-1], weights_only=True)
    assert payload["collected_frames"] == 5120
    assert payload["meta"]["policy_path"] == "loss_module.actor_network"


@pytest.mark.slow
def test_eval_of_the_run_directory_reproduces_its_final_evaluation(source_run, capsys):
    logged = last_evaluation(source_run)
    assert logged["counters/total_frames"] == 5120
    assert logged[EVAL_RETURN] > 100  # a clear return: the comparison below is not between two random policies
    code, out, _ = xdrl(capsys, "eval", str(source_run), "--episodes", "5", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["policy"].endswith("policy_step_00000020.pt")
    assert result["episodes"] == 5 and len(result["returns"]) == 5
    assert result["return"]["mean"] == pytest.approx(logged[EVAL_RETURN], rel=1e-6)
    assert result["return"]["min"] == pytest.approx(logged["eval/deterministic/reward/episode_reward_min"], rel=1e-6)
    assert result["return"]["max"] == pytest.approx(logged["eval/deterministic/reward/episode_reward_max"], rel=1e-6)
    assert result["length"]["mean"] == pytest.approx(logged["eval/deterministic/episode_length_mean"], rel=1e-6)

    # The policy file itself gives the same; the text output says the same numbers.
    code, out, _ = xdrl(capsys, "eval", result["policy"], "--episodes", "5", "--json")
    assert json.loads(out)["returns"] == result["returns"]
    code, out, _ = xdrl(capsys, "eval", result["policy"], "--episodes", "5")
    assert f"return: mean {result['return']['mean']:.2f}  std {result['return']['std']:.2f}" in out
    # More episodes start with the same ones (episode i always starts from the same state).
    code, out, _ = xdrl(capsys, "eval", str(source_run), "--json")
    ten = json.loads(out)
    assert ten["episodes"] == 10 and ten["returns"][:5] == result["returns"]


@pytest.mark.slow
def test_a_policy_file_away_from_its_run_needs_the_config(source_run, tmp_path, capsys):
    moved = tmp_path / "policy.pt"
    shutil.copy(policy_files(source_run)[-1], moved)
    code, _, err = xdrl(capsys, "eval", str(moved))
    assert code == 2 and "--config" in err and len(err.strip().splitlines()) == 1
    code, out, _ = xdrl(capsys, "eval", str(moved), "--config", str(source_run / "config.yaml"), "--episodes", "5")
    assert code == 0 and "return: mean" in out


@pytest.mark.slow
def test_eval_errors_are_one_line_exit_2(source_run, tmp_path, capsys):
    cases = {
        "no policy": (["eval", str(tmp_path)], "PATH="),
        "missing": (["eval", str(tmp_path / "nope")], "does not exist"),
        "not a checkpoint": (
            ["eval", str(source_run / "config.yaml"), "--config", str(source_run / "config.yaml")],
            "policy checkpoint",
        ),
        "episodes": (["eval", str(source_run), "--episodes", "0"], "--episodes=0"),
        "video dir": (["eval", str(source_run), "--video", str(tmp_path / "no" / "v.gif")], "existing directory"),
        "video format": (["eval", str(source_run), "--video", str(tmp_path / "v.avi")], ".mp4"),
        "best of a run": (["eval", str(source_run), "--best"], "experiment"),
    }
    for name, (args, needle) in cases.items():
        code, out, err = xdrl(capsys, *args)
        assert code == 2, name
        assert needle in err and len(err.strip().splitlines()) == 1, (name, err)
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.slow
def test_a_checkpoint_that_does_not_fit_is_named(source_run, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    text = (source_run / "config.yaml").read_text().replace("- 64\n  - 64\n", "- 32\n  - 32\n")
    assert text != (source_run / "config.yaml").read_text()
    config.write_text(text)
    code, _, err = xdrl(capsys, "eval", str(policy_files(source_run)[-1]), "--config", str(config))
    assert code == 2
    assert "tensor module.0.module.0.weight is [64, 4] in the file and [32, 4] in the configured network" in err


@pytest.mark.slow
def test_video_has_a_frame_per_step(source_run, tmp_path, capsys):
    import av

    video = tmp_path / "play.mp4"
    code, out, _ = xdrl(capsys, "eval", str(source_run), "--episodes", "2", "--video", str(video), "--json")
    assert code == 0
    result = json.loads(out)
    steps = result["lengths"][0]
    assert result["video"] == str(video) and result["video_frames"] == steps
    with av.open(str(video)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == steps
    assert frames[0].shape == (400, 600, 3) and frames[0].std() > 0  # CartPole's picture, not a blank

    # A GIF plays the same steps; Pillow stores a frame equal to the one before as one longer frame.
    gif = tmp_path / "play.gif"
    code, out, _ = xdrl(capsys, "eval", str(source_run), "--episodes", "2", "--video", str(gif), "--json")
    assert code == 0 and json.loads(out)["video_frames"] == steps
    with Image.open(gif) as image:
        durations = []
        for index in range(image.n_frames):
            image.seek(index)
            durations.append(image.info["duration"])
    assert 1 < len(durations) <= steps
    assert sum(durations) == pytest.approx(steps * 1000 / 30, abs=steps * 10)  # GIF delays are in 10 ms steps


def test_video_of_an_env_that_cannot_render(tmp_path, capsys):
    import gymnasium

    gymnasium.register("XdrlNoRender-v0", entry_point="tests.test_eval_warm_start:make_no_render_env")
    run = tmp_path / "run"
    overrides = [
        "env.id=XdrlNoRender-v0",
        "collector.total_frames=64",
        "collector.frames_per_batch=64",
        "env.num_envs=1",
    ]
    args = [*overrides, "logger=none", "hooks.eval.interval_frames=0", "hooks.policy_checkpoint.interval=1"]
    assert cli.main(["train", *args, f"output_dir={run}", "--no-progress"]) == 0
    capsys.readouterr()
    code, _, err = xdrl(capsys, "eval", str(run), "--video", str(tmp_path / "v.mp4"))
    assert code == 2 and "renders rgb frames" in err and "XdrlNoRender-v0" in err
    assert not (tmp_path / "v.mp4").exists()


def make_no_render_env():
    """A four-step env without rgb frames (its render modes list none)."""
    import gymnasium
    import numpy as np

    class NoRender(gymnasium.Env):
        metadata = {"render_modes": []}
        observation_space = gymnasium.spaces.Box(-1, 1, (2,), np.float32)
        action_space = gymnasium.spaces.Discrete(2)

        def __init__(self, render_mode=None):
            self.render_mode = render_mode
            self.t = 0

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            return np.zeros(2, np.float32), {}

        def step(self, action):
            self.t += 1
            return np.zeros(2, np.float32), float(action), self.t >= 4, False, {}

    return NoRender()


@pytest.mark.slow
def test_evaluation_statistics_over_exactly_the_episodes_played(source_run):
    """The hook on a batched env of 5 against 5 single-env episodes played by hand from the same seeds."""
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    from xdrl.builder.envs import make_env
    from xdrl.builder.experiment import build_algorithm, eval_seed, make_eval_env
    from xdrl.builder.warm_start import load_policy_state

    logged = last_evaluation(source_run)
    shortest, longest = logged["eval/deterministic/episode_length_min"], logged["eval/deterministic/episode_length_max"]
    assert shortest < longest
    cut = int(shortest + longest) // 2  # some episodes end before, some are cut here
    validated = validate(compose_config([*SOURCE, f"hooks.eval.max_steps={cut}"]))
    parts = build_algorithm(validated, "cpu")
    load_policy_state(validated, parts, policy_files(source_run)[-1], "test")
    config, info = validated.config, validated.env_info
    hook = LoggingEvaluationMetricsHook(
        policy=parts.policy,
        environment=make_eval_env(validated, None),
        group="agents",
        metric_subgroup="deterministic",
        interval_frames=1,
        max_steps=cut,
        deterministic=True,
        render=False,
        video_fps=30,
        reward_key=("next", "reward"),
        reduce_stats=True,
        seed=eval_seed(config),
    )
    metrics = hook.evaluate(step=0)
    assert hook.evaluate(step=0) == {**metrics, "timers/eval/deterministic/evaluation_time": pytest.approx(0, abs=100)}

    returns, lengths = [], []
    seed = eval_seed(config)
    for _ in range(5):
        env = make_env(config.env, info, seed=0, num_envs=1)
        seed_next = env.set_seed(seed)
        with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
            rollout = env.rollout(cut, policy=parts.policy)
        returns.append(float(rollout["next", "reward"].sum()))
        lengths.append(rollout.shape[0])
        env.close()
        seed = seed_next
    hook.close()
    parts.trainer.collector.shutdown()
    assert max(lengths) == cut and min(lengths) < cut  # both kinds of ends
    assert metrics["eval/deterministic/reward/episode_reward_mean"] == pytest.approx(sum(returns) / 5)
    assert metrics["eval/deterministic/reward/episode_reward_min"] == min(returns)
    assert metrics["eval/deterministic/reward/episode_reward_max"] == max(returns)
    assert metrics["eval/deterministic/episode_length_mean"] == pytest.approx(sum(lengths) / 5)


@pytest.mark.slow
def test_warm_start_with_a_frozen_learning_rate_evaluates_as_the_source(source_run, tmp_path, capsys):
    run = tmp_path / "warm"
    code = cli.main(
        [
            "train",
            "experiment=cartpole_ppo",
            "collector.total_frames=512",
            "hooks.eval.interval_frames=256",
            "hooks.eval.episodes=5",
            f"init.policy={source_run}",  # a run directory: its newest policy file
            "algo.lr=0",
            "logger=wandb",
            "logger.mode=offline",
            f"output_dir={run}",
            "--no-progress",
        ]
    )
    assert code == 0
    source_return = last_evaluation(source_run)[EVAL_RETURN]
    evaluations = [row[EVAL_RETURN] for row in read_jsonl(run / METRICS_FILE) if EVAL_RETURN in row]
    assert evaluations == [pytest.approx(source_return, rel=1e-6)] * 2
    final = str(policy_files(source_run)[-1])
    assert f"policy: {final}" in (run / "config.yaml").read_text()
    records = read_run(find_run_files(run / "wandb")[0])
    assert records.config["init"] == {"policy": final}
    # A fresh start of the same config evaluates as a random policy does, far below.
    assert source_return > 100


@pytest.mark.slow
def test_warm_start_refusals(source_run, tmp_path, capsys):
    dqn = tmp_path / "dqn"
    assert (
        cli.main(
            [
                "train",
                "experiment=cartpole_dqn",
                "collector.total_frames=256",
                "collector.init_random_frames=0",
                "hooks.eval.interval_frames=0",
                "logger=none",
                f"output_dir={dqn}",
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    cases = {
        # DQN's Q-network (256 units) into PPO's actor (64): the first tensor and both shapes.
        "dqn into ppo": (
            [f"init.policy={dqn}"],
            "tensor module.0.module.0.weight is [256, 4] in the file and [64, 4] in the configured network",
        ),
        # Same shapes, another module: the file says what it holds.
        "same shapes": (
            [f"init.policy={dqn}", "algo.hidden_sizes=[256,256]"],
            "belongs to loss_module.value_network in the file, not to loss_module.actor_network",
        ),
        "missing": ([f"init.policy={tmp_path / 'nope.pt'}"], "does not exist"),
        "empty run": ([f"init.policy={tmp_path}"], "holds no policy checkpoint"),
        "not a policy": ([f"init.policy={source_run / 'config.yaml'}"], "not a readable policy checkpoint"),
    }
    for name, (extra, needle) in cases.items():
        out = tmp_path / f"out-{name.replace(' ', '_')}"
        code, _, err = xdrl(capsys, "train", "experiment=cartpole_ppo", *extra, f"output_dir={out}")
        assert code == 2, name
        assert err.startswith("xdrl: error: init.policy=") and needle in err and len(err.strip().splitlines()) == 1, (
            name,
            err,
        )
        assert not out.exists(), name
    # A resume keeps where the run started.
    code, _, err = xdrl(capsys, "train", "--resume", str(source_run), f"init.policy={dqn}")
    assert code == 2 and "init.policy" in err


@pytest.mark.slow
def test_a_warm_started_sweep_then_eval_of_its_best_trial(local_ray, source_run, tmp_path, capsys):
    """Every trial starts from the policy file; the best command keeps it; --best plays the trial the report picks."""
    from xdrl.distributed import tuner
    from xdrl.report.build import best_trial, build_report
    from xdrl.report.data import load_experiment

    plan = tuner.plan(
        [
            "experiment=cartpole_ppo",
            "search=optuna",
            "search.searcher=grid",
            "search.scheduler=none",
            "search.space={algo:{lr:{type:choice,values:[0.0,0.003]}}}",
            "search.num_samples=1",
            "collector.total_frames=768",
            "hooks.eval.interval_frames=256",
            "hooks.eval.episodes=5",
            "logger.mode=offline",
            f"init.policy={source_run}",
            f"search.storage_path={tmp_path}",
            "search.experiment_name=warm",
        ]
    )
    assert not tuner.run(plan).errors
    final = str(policy_files(source_run)[-1])
    source_return = last_evaluation(source_run)[EVAL_RETURN]
    data = load_experiment(plan.experiment_dir)
    assert len(data.trials) == 2
    for trial in data.trials:
        config_text = (trial.directory / "config.yaml").read_text()
        assert f"policy: {final}" in config_text
        assert read_run(find_run_files(trial.directory / "wandb")[0]).config["init"] == {"policy": final}
        first = next(row for row in read_jsonl(trial.directory / METRICS_FILE) if EVAL_RETURN in row)
        if trial.params["algo.lr"] == 0.0:
            assert first[EVAL_RETURN] == pytest.approx(source_return, rel=1e-6)
    report = build_report(plan.experiment_dir)
    assert f"init.policy={final}" in report.best_command
    assert f"- start: warm start from `{final}` (init.policy)" in report.markdown.read_text()
    best = best_trial(data)
    capsys.readouterr()  # Tune's own output
    code, out, _ = xdrl(capsys, "eval", str(plan.experiment_dir), "--best", "--episodes", "5", "--json")
    assert code == 0
    assert json.loads(out)["policy"].startswith(str(best.directory) + "/policies/")


@pytest.mark.slow
def test_eval_of_a_multi_objective_policy_gives_each_objective(tmp_path, capsys):
    run = tmp_path / "mo"
    args = ["experiment=deep_sea_treasure_ppo", "collector.total_frames=1024", "logger=none", f"output_dir={run}"]
    assert cli.main(["train", *args, "--no-progress"]) == 0
    capsys.readouterr()
    code, out, _ = xdrl(capsys, "eval", str(run), "--episodes", "4", "--stochastic", "--json")
    assert code == 0
    result = json.loads(out)
    weights = result["reward_weights"]
    assert len(result["objectives"]) == len(weights) == 2
    weighted = sum(w * objective["mean"] for w, objective in zip(weights, result["objectives"], strict=True))
    assert weighted == pytest.approx(result["return"]["mean"], rel=1e-5)
    assert not result["deterministic"]
    code, text, _ = xdrl(capsys, "eval", str(run), "--episodes", "4", "--stochastic")
    assert "objective 0: mean" in text and "objective 1: mean" in text
