"""Experiment configuration: Hydra composition, typed schema, validation."""

from xdrl.config.errors import ConfigError
from xdrl.config.loading import compose_config, config_dir
from xdrl.config.schema import ExperimentConfig
from xdrl.config.validation import ValidatedExperiment, validate

__all__ = ["ConfigError", "ExperimentConfig", "ValidatedExperiment", "compose_config", "config_dir", "validate"]
