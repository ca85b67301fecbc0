"""Live hyperparameters: after loading another run's checkpoint, the config's values are the ones in force.

This is what a PBT exploit relies on: a member loads its donor's full trainer state (whose
optimizer, loss buffers and schedules hold the donor's values) and must then train with its
own, newly explored, values. Each algorithm's live keys are checked on the objects that use them.
"""

import pytest
import torch

from tests.helpers import tiny
from xdrl.builder.checkpointing import load_latest
from xdrl.builder.experiment import Exploit, build, restore
from xdrl.config import compose_config, validate
from xdrl.config.algorithms import ALGORITHMS
from xdrl.records.lineage import read_jsonl

#: Per preset: values different from the preset's for every live key (all accepted by validation).
NEW_VALUES = {
    "cartpole_ppo": {
        "lr": 1.5e-4,
        "clip_epsilon": 0.13,
        "entropy_coef": 0.011,
        "critic_coef": 0.31,
        "gamma": 0.91,
        "gae_lambda": 0.71,
        "max_grad_norm": 2.5,
        "epochs": 3,
    },
    "cartpole_dqn": {
        "lr": 1.5e-4,
        "gamma": 0.91,
        "target_update_interval": 7,
        "eps_init": 0.8,
        "eps_end": 0.2,
        "exploration_fraction": 0.5,
        "max_grad_norm": 2.5,
        "optim_steps_per_batch": 3,
    },
    "pendulum_sac": {
        "lr": 1.5e-4,
        "gamma": 0.91,
        "tau": 0.02,
        "target_entropy": -0.3,
        "max_grad_norm": 2.5,
        "optim_steps_per_batch": 3,
    },
}


def _experiment(tmp_path, name, preset, *extra):
    validated = validate(compose_config(tiny(preset, "logger=none", "checkpoint.interval=1", *extra)))
    return build(validated, "cpu", output_dir=tmp_path / name)


@pytest.mark.parametrize(
    "preset",
    # PPO in the fast subset; the off-policy presets take longer to train even at the tiny budget.
    [
        "cartpole_ppo",
        pytest.param("cartpole_dqn", marks=pytest.mark.slow),
        pytest.param("pendulum_sac", marks=pytest.mark.slow),
    ],
)
def test_a_loaded_checkpoint_trains_with_the_configs_values_not_the_checkpoints(tmp_path, preset):
    algo = preset.split("_")[1]
    new = NEW_VALUES[preset]
    assert set(new) == set(ALGORITHMS[algo].live_keys)  # every live key is covered here

    donor = _experiment(tmp_path, "donor", preset)
    assert set(donor.parts.live) == set(ALGORITHMS[algo].live_keys)
    donor.trainer.train()
    payload, _ = load_latest(donor.output_dir / "checkpoints")
    before = {key: value.get() for key, value in donor.parts.live.items()}

    member = _experiment(tmp_path, "member", preset, *(f"algo.{k}={v}" for k, v in new.items()))
    restore(member, payload, Exploit(clock=2, seed=1))
    live = {key: value.get() for key, value in member.parts.live.items()}
    for key, value in new.items():
        assert live[key] == pytest.approx(value, rel=1e-6, abs=2 / member.trainer.total_frames), key
        assert live[key] != pytest.approx(before[key]), key  # a real change, not the donor's value

    # The objects that use them, read directly.
    trainer, loss = member.trainer, member.trainer.loss_module
    schedule = member.parts.lr_schedule
    if schedule is None:
        assert all(group["lr"] == pytest.approx(new["lr"]) for group in trainer.optimizer.param_groups)
    else:  # annealed (algo.anneal_lr): the new rate at the point of the schedule the donor reached
        done = schedule.last_epoch / schedule.total_iters
        factor = schedule.start_factor + (schedule.end_factor - schedule.start_factor) * done
        assert schedule.base_lrs == [pytest.approx(new["lr"])] * len(trainer.optimizer.param_groups) and done > 0
        assert all(group["lr"] == pytest.approx(new["lr"] * factor) for group in trainer.optimizer.param_groups)
    assert trainer.clip_norm == new["max_grad_norm"]
    if algo == "ppo":
        clip = new["clip_epsilon"]
        if member.config.algo["anneal_clip"]:  # the preset's decaying clip range: set before each update
            trainer._pre_optim_hook()
            clip *= max(1.0 - trainer.collected_frames / trainer.total_frames, 0.0)
            assert float(loss.clip_epsilon) == pytest.approx(clip)
            # The decay starts from the new value: before the donor's run ended it is not 0.
            trainer.collected_frames //= 2
            trainer._pre_optim_hook()
            clip = new["clip_epsilon"] * (1.0 - trainer.collected_frames / trainer.total_frames)
            trainer.collected_frames = donor.trainer.collected_frames
        assert float(loss.clip_epsilon) == pytest.approx(clip)
        assert float(loss.entropy_coeff) == pytest.approx(new["entropy_coef"])
        assert trainer.num_epochs == new["epochs"]
    if algo in ("dqn", "sac"):
        assert float(loss.value_estimator.gamma) == pytest.approx(new["gamma"])
        assert trainer.optim_steps_per_batch == new["optim_steps_per_batch"]
    if algo == "dqn":
        greedy = member.parts.policy[1]
        annealed = member.trainer._modules["epsilon_annealing"].last_frames
        steps = greedy.annealing_num_steps
        assert steps == int(new["exploration_fraction"] * member.trainer.total_frames)
        expected = max(new["eps_end"], new["eps_init"] - (new["eps_init"] - new["eps_end"]) * annealed / steps)
        assert float(greedy.eps) == pytest.approx(expected) and annealed > 0
    if algo == "sac":
        assert float(loss.target_entropy) == pytest.approx(new["target_entropy"])

    # The learning state is the donor's: weights and frames.
    assert member.trainer.collected_frames == donor.trainer.collected_frames
    donor_weights = payload["trainer"]["loss_module"]
    for name, tensor in member.trainer.loss_module.state_dict().items():
        if name in donor_weights and name.endswith("weight"):
            assert torch.equal(tensor, donor_weights[name]), name
    # ... and the record keeping is the member's own clock.
    assert member.router.iteration == 2 and member.hooks.counters_hook.iteration == 2
    assert member.policies.num_calls == 2 and member.checkpoints.last_saved_iteration == 2


@pytest.mark.slow
def test_an_exploit_can_keep_the_members_own_replay_buffer(tmp_path):
    donor = _experiment(tmp_path, "donor", "cartpole_dqn")
    donor.trainer.train()
    donor_payload, _ = load_latest(donor.output_dir / "checkpoints")
    own = _experiment(tmp_path, "own", "cartpole_dqn", "seed=7")
    own.trainer.train()
    own_payload, _ = load_latest(own.output_dir / "checkpoints")

    member = _experiment(tmp_path, "member", "cartpole_dqn", "seed=7")
    restore(member, donor_payload, Exploit(clock=3, extra=own_payload["extra"], seed=2))
    kept = member.parts.extra_state()["replay_buffer"]["_storage"]
    mine = own_payload["extra"]["replay_buffer"]["_storage"]
    theirs = donor_payload["extra"]["replay_buffer"]["_storage"]
    # Only the rows written so far: TorchRL allocates the storage's full capacity uninitialised, and
    # the unwritten rows hold whatever was in memory (NaN bit patterns included, which torch.equal
    # never calls equal).
    assert kept["_len"] == mine["_len"] > 0
    written = kept["_len"]
    assert torch.equal(kept["_storage"]["observation"][:written], mine["_storage"]["observation"][:written])
    assert not torch.equal(kept["_storage"]["observation"][:written], theirs["_storage"]["observation"][:written])


def test_hparams_are_logged_every_iteration_from_the_live_trainer(tmp_path):
    experiment = _experiment(
        tmp_path, "run", "cartpole_ppo", "hooks.hparams=[algo.lr,algo.clip_epsilon]", "algo.lr=2e-4"
    )
    experiment.trainer.train()
    rows = read_jsonl(experiment.output_dir / "metrics.jsonl")
    assert rows and all(row["hparams/algo.lr"] == pytest.approx(2e-4) for row in rows)
    assert all(row["hparams/algo.clip_epsilon"] == pytest.approx(0.2) for row in rows)
    # The value in force, not the config's: change it on the live loss and the next row shows it.
    experiment.parts.live["clip_epsilon"].set(0.05)
    assert experiment.parts.live["clip_epsilon"].get() == pytest.approx(0.05)
