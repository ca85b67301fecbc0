"""Population-based training settings refused before Ray starts, with the key, the value and the reason."""

import pytest

from tests.helpers import run_xdrl
from xdrl.config import ConfigError


def _plan(tmp_path, *overrides, preset="cartpole_ppo", search="pbt"):
    from xdrl.distributed import tuner

    return tuner.plan(
        [f"experiment={preset}", f"search={search}", f"search.storage_path={tmp_path / 'store'}", *overrides],
        check_schema=False,
    )


PBT_CASES = {
    "a network size": (
        ["search.pbt.mutations={algo:{hidden_sizes:{type:choice,values:[[32],[64]]}}}"],
        r"^search.pbt.mutations.algo.hidden_sizes='algo.hidden_sizes' is not accepted: expected a key a live ppo "
        r"trainer can change \(algo.lr, .*\); algo.hidden_sizes cannot: it sets the networks' shapes",
    ),
    "an environment key": (
        ["search.pbt.mutations={env:{num_envs:{type:int,low:2,high:8}}}"],
        r"^search.pbt.mutations.env.num_envs='env.num_envs' is not accepted: .*only algorithm hyperparameters change "
        r"on a live trainer",
    ),
    "the replay buffer's size": (
        ["search.pbt.mutations={algo:{buffer_size:{type:int,low:1000,high:5000}}}"],
        r"^search.pbt.mutations.algo.buffer_size=.*cannot: the replay buffer's storage is allocated once",
        "cartpole_dqn",
    ),
    "a first population of different networks": (
        ["search.space={algo:{lr:{type:loguniform,low:1e-4,high:1e-3},hidden_sizes:{type:choice,values:[[32],[64]]}}}"],
        r"^search.space.algo.hidden_sizes='algo.hidden_sizes' is not accepted: expected keys a live ppo trainer can "
        r"change with search.scheduler=pbt \(members load each other's whole trainer\); algo.hidden_sizes cannot",
    ),
    "a perturbation interval off the checkpoints": (
        ["checkpoint.interval=4", "search.pbt.perturbation_interval=6"],
        r"^search.pbt.perturbation_interval=6 is not accepted: expected a multiple of checkpoint.interval=4",
    ),
    "a perturbation interval beyond the run": (
        ["collector.total_frames=2048", "checkpoint.interval=1", "search.pbt.perturbation_interval=8"],
        r"^search.pbt.perturbation_interval=8 is not accepted: expected fewer than the run's 8 iterations",
    ),
    "a schedule of a mutated key": (
        ["schedule=[{frames:0,values:{algo.clip_epsilon:0.1}},{frames:256,values:{algo.lr:0.001}}]"],
        r"^schedule\[1\].values.algo.lr=0.001 is not accepted: expected no key that search.pbt.mutations also "
        r"changes",
    ),
    "a zero perturbation interval": (
        ["search.pbt.perturbation_interval=0"],
        r"^search.pbt.perturbation_interval=0 is not accepted: expected 1 or more iterations$",
    ),
    "a quantile over half": (
        ["search.pbt.quantile_fraction=0.6"],
        r"^search.pbt.quantile_fraction=0.6 is not accepted: expected a number above 0 and at most 0.5$",
    ),
    "a resample probability over 1": (
        ["search.pbt.resample_probability=1.5"],
        r"^search.pbt.resample_probability=1.5 is not accepted",
    ),
    "a search algorithm": (
        ["search.searcher=optuna"],
        r"^search.searcher='optuna' is not accepted: expected random or grid with search.scheduler=pbt",
    ),
    "a mutation range the config refuses": (
        ["search.pbt.mutations={algo:{gamma:{type:uniform,low:0.9,high:1.5}}}"],
        r"^search.pbt.mutations.algo.gamma=1.5 is not accepted: expected values the config accepts",
    ),
    "a choice for PB2": (
        ["search.scheduler=pb2", "search.pbt.mutations={algo:{lr:{type:choice,values:[0.001,0.002]}}}"],
        r"^search.pbt.mutations.algo.lr='choice' is not accepted: expected a uniform, loguniform or int range for PB2",
    ),
}


@pytest.mark.parametrize("case", sorted(PBT_CASES))
def test_pbt_validation_error(case, tmp_path):
    overrides, pattern, *preset = PBT_CASES[case]
    with pytest.raises(ConfigError, match=pattern):
        _plan(tmp_path, *overrides, preset=preset[0] if preset else "cartpole_ppo")
    assert not (tmp_path / "store").exists()


def test_a_pbt_plan_logs_the_mutated_keys_of_every_member(tmp_path):
    plan = _plan(tmp_path, "hooks.hparams=[algo.gamma]")
    assert plan.base["hooks"]["hparams"] == ["algo.gamma", "algo.lr", "algo.clip_epsilon", "algo.entropy_coef"]
    assert plan.search.scheduler == "pbt" and plan.search.searcher == "random"
    assert plan.search.pbt.perturbation_interval % plan.base["checkpoint"]["interval"] == 0


def test_hparams_must_be_live_keys(tmp_path):
    from xdrl.config import compose_config, validate

    with pytest.raises(ConfigError, match=r"^hooks.hparams='algo.buffer_size' is not accepted: expected keys a live"):
        validate(compose_config(["experiment=cartpole_dqn", "hooks.hparams=[algo.lr,algo.buffer_size]"]))


def test_cli_refuses_a_fixed_mutation_with_one_line_and_exit_2(tmp_path):
    result = run_xdrl(
        "tune",
        "experiment=cartpole_dqn",
        "search=pbt",
        "search.pbt.mutations={algo:{double_dqn:{type:choice,values:[true,false]}}}",
        f"search.storage_path={tmp_path / 'store'}",
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "search.pbt.mutations.algo.double_dqn" in lines[0]
    assert "the loss's target is wired once, at build" in lines[0]
    assert not (tmp_path / "store").exists()
