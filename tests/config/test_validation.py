"""Every bad input gives one line naming the key, the value and what is accepted."""

import time

import pytest

from tests.helpers import run_xdrl
from xdrl.config import ConfigError, compose_config, validate

CASES = {
    "unknown env id": (
        ["env.id=CartPol-v1"],
        r"env.id='CartPol-v1' is not accepted: expected a registered gymnasium or MO-Gymnasium id \(close: CartPole-v1",
    ),
    "unknown algorithm": (["algo=ppx"], r"algo='ppx' is not accepted: expected one of dqn, ppo, sac"),
    "algorithm name in a file": (["algo.name=a2c"], r"algo.name='a2c' is not accepted: expected one of dqn, ppo, sac"),
    "reward weights too long": (
        ["experiment=deep_sea_treasure_ppo", "env.reward_weights=[1.0,0.5,2.0]"],
        r"env.reward_weights=\[1.0, 0.5, 2.0\] is not accepted: expected 2 weights: deep-sea-treasure-v0 has 2 reward objectives",
    ),
    "weights on a single-objective env": (
        ["env.reward_weights=[1.0,2.0]"],
        r"env.reward_weights=\[1.0, 2.0\] is not accepted: expected 1 weight: CartPole-v1 has 1 reward objective",
    ),
    "multi-objective env without weights": (
        ["env.id=deep-sea-treasure-v0"],
        r"env.reward_weights=None is not accepted: expected 2 weights",
    ),
    "non-positive total frames": (
        ["collector.total_frames=0"],
        r"collector.total_frames=0 is not accepted: expected a positive number",
    ),
    "negative batch": (
        ["collector.frames_per_batch=-256"],
        r"collector.frames_per_batch=-256 is not accepted: expected a positive number",
    ),
    "non-positive learning rate": (["algo.lr=0"], r"algo.lr=0.0 is not accepted: expected a positive number"),
    "eval interval not a multiple": (
        ["collector.frames_per_batch=1000", "hooks.eval.interval_frames=2500"],
        r"hooks.eval.interval_frames=2500 is not accepted: expected a multiple of collector.frames_per_batch=1000",
    ),
    "policy path the algorithm lacks": (
        ["algo=dqn", "hooks.policy_checkpoint.policy_path=loss_module.actor_network"],
        r"hooks.policy_checkpoint.policy_path='loss_module.actor_network' is not accepted: expected null or a module of dqn: loss_module.value_network",
    ),
    "algorithm for the wrong action space": (
        ["env=pendulum", "algo=dqn"],
        r"algo.name='dqn' is not accepted: expected an algorithm for the box actions of Pendulum-v1 \(ppo, sac\)",
    ),
    "unknown key": (
        ["algo.learning_rate=1"],
        r"algo.learning_rate=.1.? is not accepted: expected one of the keys .*lr",
    ),
    "wrong type": (
        ["collector.total_frames=lots"],
        r"collector.total_frames='lots' is not accepted: expected an integer",
    ),
    "reference point size": (
        ["experiment=deep_sea_treasure_ppo", "env.reference_point=[0.0]"],
        r"env.reference_point=\[0.0\] is not accepted: expected 2 values, one per reward objective",
    ),
    "unknown device": (
        ["resources.device=tpu"],
        r"resources.device='tpu' is not accepted: expected auto, cpu, cuda or cuda:N",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_validation_error(case):
    overrides, pattern = CASES[case]
    with pytest.raises(ConfigError, match=pattern):
        validate(compose_config(overrides))


def test_presets_validate():
    for preset in ("cartpole_ppo", "cartpole_dqn", "pendulum_sac", "deep_sea_treasure_ppo"):
        validated = validate(compose_config([f"experiment={preset}"]))
        assert validated.config.name == preset


def test_overrides_reach_the_typed_config():
    validated = validate(compose_config(["experiment=cartpole_ppo", "algo.lr=1e-3", "env.id=Acrobot-v1"]))
    assert validated.algo.lr == 1e-3
    assert validated.config.env.id == "Acrobot-v1"
    assert validated.env_info.num_actions == 3


@pytest.mark.parametrize("case", ["unknown env id", "eval interval not a multiple", "unknown algorithm"])
def test_cli_prints_one_line_and_exits_2_within_seconds(case, tmp_path):
    overrides, pattern = CASES[case]
    start = time.monotonic()
    result = run_xdrl("train", *overrides, f"output_dir={tmp_path / 'run'}", timeout=60)
    elapsed = time.monotonic() - start
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xdrl: error: "), result.stderr
    assert __import__("re").search(pattern, lines[0])
    assert elapsed < 30
    assert not (tmp_path / "run").exists()  # nothing was created


def test_config_error_survives_pickling():
    import pickle

    error = pickle.loads(pickle.dumps(ConfigError("algo.lr", -1.0, "a positive number")))
    assert (error.key, error.value, str(error)) == (
        "algo.lr",
        -1.0,
        "algo.lr=-1.0 is not accepted: expected a positive number",
    )
