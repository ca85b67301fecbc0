"""Every bad input gives one line naming the key, the value and what is accepted."""

import pathlib

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
    "negative learning rate": (["algo.lr=-0.001"], r"algo.lr=-0.001 is not accepted: expected 0 or more"),
    "unknown env backend": (
        ["collector.env_backend=subproc"],
        r"collector.env_backend='subproc' is not accepted: expected one of vector, serial, parallel",
    ),
    "unknown collector implementation": (
        ["collector.implementation=sb3"],
        r"collector.implementation='sb3' is not accepted: expected one of xdrl, torchrl",
    ),
    "unknown critic loss": (
        ["algo.critic_loss=huber"],
        r"algo.critic_loss='huber' is not accepted: expected one of l2, smooth_l1, l1",
    ),
    "no evaluation episodes": (
        ["hooks.eval.episodes=0"],
        r"hooks.eval.episodes=0 is not accepted: expected a positive number",
    ),
    "missing warm-start policy": (
        ["init.policy=/nonexistent/policy.pt"],
        r"init.policy='/nonexistent/policy.pt' is not accepted: expected null, a policy checkpoint file or a run directory with one \(/nonexistent/policy.pt does not exist\)",
    ),
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
    # Non-finite numbers, for every float key (the schema's float conversion).
    "infinite learning rate": (["algo.lr=inf"], r"^algo.lr=inf is not accepted: expected a finite number$"),
    "nan learning rate": (["algo.lr=nan"], r"^algo.lr=nan is not accepted: expected a finite number$"),
    "infinite gradient norm": (
        ["algo.max_grad_norm=inf"],
        r"^algo.max_grad_norm=inf is not accepted: expected a finite",
    ),
    "negative infinite gamma": (["algo.gamma=-inf"], r"^algo.gamma=-inf is not accepted: expected a finite number"),
    "infinite gpus per trial": (
        ["resources.gpus_per_trial=inf"],
        r"^resources.gpus_per_trial=inf is not accepted: expected a finite number",
    ),
    "infinite reward weight": (
        ["experiment=deep_sea_treasure_ppo", "env.reward_weights=[inf,1.0]"],
        r"^env.reward_weights\[0\]=inf is not accepted: expected a finite number",
    ),
    "nan reference point": (
        ["experiment=deep_sea_treasure_ppo", "env.reference_point=[0.0,nan]"],
        r"^env.reference_point\[1\]=nan is not accepted: expected a finite number",
    ),
    # Sizes past their bound.
    "layer too wide": (
        ["algo.hidden_sizes=[64,1000000000]"],
        r"^algo.hidden_sizes=\[64, 1000000000\] is not accepted: expected a non-empty list of layer sizes from 1 to 65536$",
    ),
    "total frames as a float": (
        ["collector.total_frames=1e20"],
        r"^collector.total_frames=1e\+20 is not accepted: expected an integer$",
    ),
    "total frames too many": (
        ["collector.total_frames=100000000000000000000"],
        r"^collector.total_frames=100000000000000000000 is not accepted: expected at most 1_000_000_000_000 frames$",
    ),
    "frames per batch too many": (
        ["collector.frames_per_batch=2000000", "collector.total_frames=4000000", "hooks.eval.interval_frames=0"],
        r"^collector.frames_per_batch=2000000 is not accepted: expected at most 1_048_576 frames per batch$",
    ),
    "too many envs": (
        ["env.num_envs=2048", "collector.frames_per_batch=2048"],
        r"^env.num_envs=2048 is not accepted: expected at most 1_024 environments$",
    ),
    "buffer too large": (
        ["experiment=cartpole_dqn", "algo.buffer_size=100000000"],
        r"^algo.buffer_size=100000000 is not accepted: expected at most 10_000_000 transitions$",
    ),
    "batch too large": (
        ["experiment=cartpole_dqn", "algo.batch_size=100000000"],
        r"^algo.batch_size=100000000 is not accepted: expected at most 1_048_576 transitions$",
    ),
    "minibatch too large": (
        ["algo.minibatch_size=100000000"],
        r"^algo.minibatch_size=100000000 is not accepted: expected at most 1_048_576 transitions$",
    ),
    "random frames beyond the budget": (
        ["experiment=cartpole_dqn", "collector.total_frames=512", "collector.init_random_frames=1024"],
        r"^collector.init_random_frames=1024 is not accepted: expected at most collector.total_frames=512$",
    ),
    "too many threads": (["resources.num_threads=100000"], r"^resources.num_threads=100000 is not accepted"),
    "negative seed": (["seed=-1"], r"^seed=-1 is not accepted: expected an integer from 0 to 2\*\*32 - 1"),
    "seed beyond numpy": (["seed=4294967296"], r"^seed=4294967296 is not accepted: expected .* \(numpy's seed range\)"),
    # Names that would leave their directory.
    "name with a parent directory": (
        ["name=../../etc"],
        r"^name='../../etc' is not accepted: expected letters, digits",
    ),
    "name with a leading dot": (["name=.hidden"], r"^name='.hidden' is not accepted"),
    "run id with a separator": (
        ["logger.run_id=../x"],
        r"^logger.run_id='../x' is not accepted: expected null or a W&B run id",
    ),
    "run name with a separator": (["logger.run_name=a/b"], r"^logger.run_name='a/b' is not accepted"),
    "group with a separator": (["logger.group=a/b"], r"^logger.group='a/b' is not accepted"),
    "project with a separator": (["logger.project=team/xdrl"], r"^logger.project='team/xdrl' is not accepted"),
    "policy file prefix with a separator": (
        ["hooks.policy_checkpoint.prefix=../policy"],
        r"^hooks.policy_checkpoint.prefix='../policy' is not accepted",
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
def test_cli_prints_one_line_and_exits_2_before_building(case, tmp_path):
    overrides, pattern = CASES[case]
    result = run_xdrl("train", *overrides, f"output_dir={tmp_path / 'run'}", timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xdrl: error: "), result.stderr
    assert __import__("re").search(pattern, lines[0])
    assert result.stdout == ""  # no run directory announced, no environment or trainer built
    assert not (tmp_path / "run").exists()  # nothing was created


def test_config_error_survives_pickling():
    import pickle

    error = pickle.loads(pickle.dumps(ConfigError("algo.lr", -1.0, "a positive number")))
    assert (error.key, error.value, str(error)) == (
        "algo.lr",
        -1.0,
        "algo.lr=-1.0 is not accepted: expected a positive number",
    )


def test_largest_accepted_values_pass():
    validate(
        compose_config(
            [
                "experiment=cartpole_dqn",
                "seed=4294967295",
                "algo.hidden_sizes=[65536]",
                "algo.buffer_size=10000000",
                "collector.total_frames=1000000000000",
                "collector.init_random_frames=1000000000000",
                "name=a.b_c-1",
                "logger.run_id=Ab_3-x",
            ]
        )
    )


def test_device_check_knows_this_host():
    import torch

    from xdrl.config.validation import check_device_here

    check_device_here("auto")
    check_device_here("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(
        ConfigError,
        match=rf"^resources.device='cuda:{count}' is not accepted: expected a device of this host: auto, cpu",
    ):
        check_device_here(f"cuda:{count}")
    if count == 0:
        with pytest.raises(ConfigError, match=r"^resources.device='cuda' .* \(torch sees 0 CUDA devices\)$"):
            check_device_here("cuda")


def test_output_dir_must_be_a_writable_directory(tmp_path):
    from xdrl.config.validation import check_output_dir

    check_output_dir(tmp_path / "new" / "run")  # to be created: fine
    check_output_dir(tmp_path)  # an existing directory: fine
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(
        ConfigError, match=r"^output_dir='.*/file' is not accepted: expected a directory \(this path is a file\)$"
    ):
        check_output_dir(file)
    with pytest.raises(ConfigError, match=r"expected a path below a directory \(.*/file is a file\)$"):
        check_output_dir(file / "run")
    # /proc/1 refuses new entries even to root (a chmod would not stop root).
    with pytest.raises(ConfigError, match=r"^output_dir='/proc/1/run' .* \(/proc/1 is not writable\)$"):
        check_output_dir(pathlib.Path("/proc/1/run"))
    assert not (tmp_path / "new").exists()


def _plan(tmp_path, *overrides):
    from xdrl.distributed import tuner

    return tuner.plan(
        ["experiment=cartpole_ppo", "search=optuna", f"search.storage_path={tmp_path / 'store'}", *overrides],
        check_schema=False,
    )


SEARCH_CASES = {
    "infinite bound": (
        ["search.spaces.ppo.algo.lr.high=inf"],
        r"^search.space.algo.lr=\{'type': 'loguniform', 'low': 0.0001, 'high': inf\} is not accepted: expected "
        r"\{type: loguniform, low: a finite number, high: a larger finite number\}$",
    ),
    "nan bound": (["search.spaces.ppo.algo.clip_epsilon.low=nan"], r"^search.space.algo.clip_epsilon=.*'low': nan"),
    # 256 and 1024 (the edges) and 640 (the midpoint) are multiples of 8; seeded random points are not.
    "interior value not a multiple": (
        ["search.space={collector:{frames_per_batch:{type:int,low:256,high:1024}}}", "hooks.eval.interval_frames=0"],
        r"^search.space.collector.frames_per_batch=\d+ is not accepted: expected values the config accepts "
        r"\(collector.frames_per_batch=\d+ is not accepted: expected a multiple of env.num_envs=8\)$",
    ),
    # Each dimension alone stays valid (minibatch 64 by default, frames per batch 256): only together they clash.
    "combination": (
        [
            "search.space={algo:{minibatch_size:{type:int,low:32,high:256},lr:{type:loguniform,low:1e-4,high:1e-3}},"
            "collector:{frames_per_batch:{type:int,low:128,high:512}}}",
            "env.num_envs=1",
            "algo.minibatch_size=64",
            "hooks.eval.interval_frames=0",
        ],
        r"^search.space=\{'algo.minibatch_size': \d+, 'collector.frames_per_batch': \d+\} is not accepted: "
        r"expected values the config accepts together \(algo.minibatch_size=\d+ is not accepted: expected at most",
    ),
    "max_t below 1": (["search.asha.max_t=0"], r"^search.asha.max_t=0 is not accepted: expected null .* or 1 or more$"),
    "grace period beyond max_t": (
        ["search.asha.max_t=2", "search.asha.grace_period=3"],
        r"^search.asha.grace_period=3 is not accepted: expected at most search.asha.max_t=2$",
    ),
    "grace period beyond the run": (
        ["collector.total_frames=1024", "search.asha.grace_period=5"],
        r"^search.asha.grace_period=5 is not accepted: expected at most the run's 4 iterations",
    ),
    "reduction factor": (
        ["search.asha.reduction_factor=1"],
        r"^search.asha.reduction_factor=1.0 is not accepted: expected a number above 1$",
    ),
    "grace period zero": (
        ["search.asha.grace_period=0"],
        r"^search.asha.grace_period=0 is not accepted: expected 1 or more",
    ),
    "experiment name with a separator": (
        ["search.experiment_name=a/b"],
        r"^search.experiment_name='a/b' is not accepted: expected letters, digits",
    ),
    "experiment name with a parent": (["search.experiment_name=..x"], r"^search.experiment_name='..x' is not accepted"),
    "a device for the trials": (
        ["resources.device=cuda"],
        r"^resources.device='cuda' is not accepted: expected auto or cpu for xdrl tune \(Ray gives each trial its GPUs",
    ),
}


@pytest.mark.parametrize("case", sorted(SEARCH_CASES))
def test_search_validation_error(case, tmp_path):
    overrides, pattern = SEARCH_CASES[case]
    with pytest.raises(ConfigError, match=pattern):
        _plan(tmp_path, *overrides)
    assert not (tmp_path / "store").exists()


def test_search_space_with_asha_within_the_run_plans(tmp_path):
    plan = _plan(tmp_path, "collector.total_frames=1024", "search.asha.grace_period=4", "search.asha.max_t=4")
    assert plan.iterations == 4 and not (tmp_path / "store").exists()


def test_interior_points_are_seeded_and_inside():
    import random

    from xdrl.config.search import Dimension

    for dimension in (
        Dimension("a", "int", 4.0, 20.0),
        Dimension("b", "uniform", 0.1, 0.3),
        Dimension("c", "loguniform", 1e-4, 1e-2),
    ):
        points = dimension.interior(random.Random(7), 5)
        assert points == dimension.interior(random.Random(7), 5)
        assert len(points) == 6 and all(dimension.low <= p <= dimension.high for p in points)
    assert Dimension("c", "loguniform", 1e-4, 1e-2).interior(random.Random(0), 0) == [pytest.approx(1e-3)]
    assert Dimension("d", "choice", values=(1, 2)).interior(random.Random(0), 5) == []
