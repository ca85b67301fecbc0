"""``xdrl train --resume DIR key=value``: overrides typed as for a new run, frozen keys refused, config.yaml saved."""

import pytest
import yaml

from xdrl import runner
from xdrl.config import ConfigError, compose_config
from xdrl.config.overrides import FROZEN_ON_RESUME, apply_resume_overrides, frozen_reason, parse_overrides


@pytest.fixture
def run_dir(tmp_path):
    """A run directory as ``xdrl train`` leaves it before training (config.yaml only)."""
    _, directory = runner.prepare_new_run(["experiment=cartpole_ppo", "logger=none", f"output_dir={tmp_path / 'run'}"])
    return directory


def _stored(directory):
    return yaml.safe_load((directory / runner.CONFIG_FILE).read_text())


@pytest.mark.parametrize(
    "override", ["algo.lr=1e-3", "algo.lr=3.0e-4", "collector.total_frames=200_000", "algo.gamma=1", "seed=7"]
)
def test_values_are_typed_as_for_a_new_run(override):
    key, _, _ = override.partition("=")
    section, _, name = key.rpartition(".")
    composed = compose_config([override])
    expected = composed[section][name] if section else composed[name]
    ((parsed_key, value),) = parse_overrides([override])
    assert parsed_key == key and value == expected and type(value) is type(expected)


def test_accepted_overrides_are_validated_then_saved(run_dir):
    before = _stored(run_dir)
    validated = runner.load_run_config(
        run_dir,
        [
            "algo.lr=1e-3",
            "collector.total_frames=200000",
            "hooks.eval.interval_frames=2560",
            "checkpoint.keep=5",
            "algo.hidden_sizes=[64,64]",  # frozen, but its stored value: no change
            "env.reference_point=null",  # read by xdrl report only
        ],
    )
    assert validated.algo.lr == 0.001 and validated.config.collector.total_frames == 200_000
    after = _stored(run_dir)
    assert after["algo"]["lr"] == 0.001 and isinstance(after["algo"]["lr"], float)
    assert after["collector"]["total_frames"] == 200_000 and after["checkpoint"]["keep"] == 5
    assert after["hooks"]["eval"]["interval_frames"] == 2560
    assert after["logger"]["run_id"] == before["logger"]["run_id"]  # the same W&B run continues
    assert not list(run_dir.glob("*.tmp*"))  # written atomically, nothing left behind


def test_no_overrides_leave_config_yaml_alone(run_dir):
    path = run_dir / runner.CONFIG_FILE
    path.write_text(path.read_text() + "# a note of the user\n")
    before = path.read_text()
    runner.load_run_config(run_dir)
    assert path.read_text() == before


FROZEN = {
    "env.id=Acrobot-v1": "the environment is part of the saved state",
    "env.num_envs=4": "the environment is part of the saved state",
    "env.normalize_observations=true": "the environment is part of the saved state",
    "env.max_episode_steps=100": "the environment is part of the saved state",
    "algo.name=dqn": "the saved networks, optimizer and buffers belong to this algorithm",
    "algo.hidden_sizes=[32]": "the saved networks have these layers",
    "algo.activation=relu": "the saved networks were trained with this activation",
    "collector.frames_per_batch=512": "count batches of this size",
    "seed=1": "the run's random streams continue from its checkpoint",
    "name=other": "it names the run",
    "output_dir=/tmp/elsewhere": "the run stays in its directory",
    "logger.run_id=abc": "continues its W&B run",
    "logger.backend=csv": "the run's metric records continue where they are",
    "logger.project=other": "continues its W&B run, which lives in this project",
}


@pytest.mark.parametrize("override", sorted(FROZEN))
def test_frozen_keys_are_refused_and_config_yaml_unchanged(run_dir, override):
    key, _, value = override.partition("=")
    before = (run_dir / runner.CONFIG_FILE).read_bytes()
    with pytest.raises(
        ConfigError, match=rf"^{key}=.* is not accepted: expected the stored value .* on --resume: "
    ) as error:
        runner.load_run_config(run_dir, ["algo.lr=1e-3", override])
    assert FROZEN[override] in str(error.value) and "(a new run can change it)" in str(error.value)
    assert (run_dir / runner.CONFIG_FILE).read_bytes() == before


def test_buffer_size_is_frozen():
    stored = {"algo": {"name": "dqn", "buffer_size": 1000}}
    assert apply_resume_overrides(stored, ["algo.buffer_size=1000"]) == stored
    with pytest.raises(ConfigError, match=r"^algo.buffer_size=2000 .* the saved replay buffer has this capacity"):
        apply_resume_overrides(stored, ["algo.buffer_size=2000"])


def test_every_frozen_key_exists_in_the_config():
    composed = compose_config(["experiment=cartpole_dqn"])
    for key in FROZEN_ON_RESUME:
        node = composed
        for part in key.split("."):
            node = node[part]
    assert frozen_reason("env.reference_point") is None and frozen_reason("hooks.eval.max_steps") is None


BAD = {
    "a config group": (["algo=dqn"], r"^algo='dqn' is not accepted: expected key=value of one setting"),
    "an added key": (["+algo.foo=1"], r"^override='\+algo.foo=1' is not accepted: expected key=value of a stored key"),
    "a deleted key": (["~seed"], r"^override='~seed' is not accepted"),
    "a sweep": (["algo.lr=1e-3,1e-4"], r"^algo.lr='1e-3,1e-4' is not accepted: expected a single value"),
    "malformed": (["algo.lr=[1,"], r"^override='algo.lr=\[1,' is not accepted: expected key=value \(Hydra override"),
    "an unknown key": (["algo.lrr=1"], r"^algo.lrr=1 is not accepted: expected an existing key of the stored config$"),
    "an infinite learning rate": (["algo.lr=inf"], r"^algo.lr=inf is not accepted: expected a finite number$"),
    "a float budget": (["collector.total_frames=1e20"], r"^collector.total_frames=1e\+20 is not accepted"),
    "a budget below one batch": (["collector.total_frames=100"], r"^collector.total_frames=100 is not accepted"),
    "a device this host lacks": (["resources.device=cuda:99"], r"^resources.device='cuda:99' is not accepted"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_overrides_are_refused_and_config_yaml_unchanged(run_dir, case):
    overrides, pattern = BAD[case]
    before = (run_dir / runner.CONFIG_FILE).read_bytes()
    with pytest.raises(ConfigError, match=pattern):
        runner.load_run_config(run_dir, ["collector.total_frames=200000", *overrides])
    assert (run_dir / runner.CONFIG_FILE).read_bytes() == before


def test_a_run_stored_before_new_keys_resumes_with_their_defaults(tmp_path):
    import yaml

    from xdrl.runner import CONFIG_FILE, load_run_config

    stored = compose_config(["experiment=cartpole_ppo", f"output_dir={tmp_path}"])
    del stored["logger"]["api_key_file"]  # a key added after the run was stored
    del stored["algo"]["clip_epsilon"]
    (tmp_path / CONFIG_FILE).write_text(yaml.safe_dump(stored))
    validated = load_run_config(tmp_path, ["collector.total_frames=200000"])
    assert validated.config.logger.api_key_file is None and validated.algo.clip_epsilon == 0.2
    saved = yaml.safe_load((tmp_path / CONFIG_FILE).read_text())
    assert saved["logger"]["api_key_file"] is None and saved["collector"]["total_frames"] == 200000
