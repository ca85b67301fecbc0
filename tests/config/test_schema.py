"""Config files and dataclasses stay in step; defaults live in the YAML only."""

import dataclasses
import inspect

import pytest
import yaml

from xdrl.config.algorithms import ALGORITHMS
from xdrl.config.loading import config_dir, group_options
from xdrl.config.schema import (
    CheckpointConfig,
    CollectorConfig,
    EnvConfig,
    ExperimentConfig,
    HooksConfig,
    LoggerConfig,
    ResourcesConfig,
    from_mapping,
)
from xdrl.trainer_hooks import LoggingEvaluationHookSet, PolicyCheckpointHook

GROUP_SCHEMAS = {
    "env": EnvConfig,
    "collector": CollectorConfig,
    "hooks": HooksConfig,
    "checkpoint": CheckpointConfig,
    "logger": LoggerConfig,
    "resources": ResourcesConfig,
}


def _fields(cls):
    return {field.name for field in dataclasses.fields(cls)}


@pytest.mark.parametrize("group", sorted(GROUP_SCHEMAS))
def test_every_group_option_has_exactly_the_schema_fields(group):
    for option in group_options(group):
        data = yaml.safe_load((config_dir() / group / f"{option}.yaml").read_text())
        from_mapping(GROUP_SCHEMAS[group], data, group)  # complete and typed


def test_every_algorithm_yaml_matches_its_config_class():
    assert set(group_options("algo")) == set(ALGORITHMS)
    for name, algorithm in ALGORITHMS.items():
        data = yaml.safe_load((config_dir() / "algo" / f"{name}.yaml").read_text())
        assert data["name"] == name
        from_mapping(algorithm.config_cls, data, "algo")


def test_schema_dataclasses_carry_no_defaults():
    classes = [ExperimentConfig, *GROUP_SCHEMAS.values(), *(a.config_cls for a in ALGORITHMS.values())]
    for cls in classes:
        for field in dataclasses.fields(cls):
            assert field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING, (
                cls,
                field.name,
            )


def test_hook_config_fields_match_hook_parameters():
    eval_params = set(inspect.signature(LoggingEvaluationHookSet).parameters)
    renamed = {"video": "render", "interval_frames": "interval_frames"}
    from xdrl.builder.experiment import make_eval_env
    from xdrl.config.schema import EvalConfig

    # hooks.eval.episodes is the evaluation environment's batch size, not a hook parameter.
    assert "episodes" in inspect.signature(make_eval_env).parameters
    for name in _fields(EvalConfig) - {"episodes"}:
        assert renamed.get(name, name) in eval_params, name
    checkpoint_params = set(inspect.signature(PolicyCheckpointHook).parameters)
    from xdrl.config.schema import PolicyCheckpointConfig

    assert _fields(PolicyCheckpointConfig) <= checkpoint_params


def test_from_mapping_reports_the_dotted_key():
    with pytest.raises(Exception, match=r"collector.total_frames='many' is not accepted: expected an integer"):
        from_mapping(
            CollectorConfig, {"total_frames": "many", "frames_per_batch": 1, "init_random_frames": 0}, "collector"
        )
    with pytest.raises(Exception, match=r"collector.init_random_frames='<missing>'"):
        from_mapping(CollectorConfig, {"total_frames": 1, "frames_per_batch": 1}, "collector")
    with pytest.raises(Exception, match=r"logger.backend='tensorboard' .* one of 'wandb', 'csv', 'none'"):
        data = yaml.safe_load((config_dir() / "logger" / "wandb.yaml").read_text())
        from_mapping(LoggerConfig, {**data, "backend": "tensorboard"}, "logger")


def test_every_algorithm_and_activation_of_the_config_has_its_builder():
    from xdrl.builder.algorithms import BUILDERS
    from xdrl.builder.algorithms.common import ACTIVATIONS as ACTIVATION_CLASSES
    from xdrl.config.algorithms import ACTIVATIONS

    assert list(BUILDERS) == list(ALGORITHMS)
    assert tuple(ACTIVATION_CLASSES) == ACTIVATIONS
