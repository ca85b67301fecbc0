"""Plumbing of the hook tests: the builder's trainers and environments, and reading back a CSVLogger."""

from __future__ import annotations

import functools
import pathlib
from typing import Any

from torchrl.envs import SerialEnv, TransformedEnv

from xdrl.builder.algorithms import AlgorithmParts
from xdrl.builder.envs import make_env
from xdrl.builder.experiment import build_algorithm, prepare_process
from xdrl.config import ValidatedExperiment, compose_config, validate


def cartpole_ppo(total_frames: int, frames_per_batch: int, *extra: str, logger: str = "none") -> list[str]:
    """Overrides of the ``cartpole_ppo`` preset at a test budget (4 epochs of 64-frame minibatches)."""
    return [
        "experiment=cartpole_ppo",
        f"collector.total_frames={total_frames}",
        f"collector.frames_per_batch={frames_per_batch}",
        "algo.minibatch_size=64",
        "algo.epochs=4",
        f"logger={logger}",
        *extra,
    ]


def cartpole_dqn(total_frames: int, frames_per_batch: int, *extra: str, logger: str = "none") -> list[str]:
    """Overrides of the ``cartpole_dqn`` preset at a test budget (8 updates per batch)."""
    return [
        "experiment=cartpole_dqn",
        f"collector.total_frames={total_frames}",
        f"collector.frames_per_batch={frames_per_batch}",
        "collector.init_random_frames=0",
        "algo.optim_steps_per_batch=8",
        f"logger={logger}",
        *extra,
    ]


def validated(overrides: list[str]) -> ValidatedExperiment:
    return validate(compose_config(overrides))


def algorithm(overrides: list[str], *, logger: Any = None) -> AlgorithmParts:
    """The experiment's TorchRL trainer without the xdrl hook set, for tests that register hooks themselves."""
    experiment = validated(overrides)
    prepare_process(experiment.config)
    return build_algorithm(experiment, "cpu", logger=logger)


@functools.cache
def _cartpole() -> ValidatedExperiment:
    return validated(["env=cartpole", "logger=none"])


def cartpole_env(*, seed: int = 0, render: bool = False) -> TransformedEnv:
    """One CartPole-v1 the way the builder makes it (step counter, running ``episode_reward``)."""
    experiment = _cartpole()
    return make_env(experiment.config.env, experiment.env_info, seed=seed, num_envs=1, render=render)


def read_csv_scalars(log_dir: pathlib.Path, exp_name: str) -> dict[str, list[tuple[int, float]]]:
    """All scalars of a CSVLogger experiment: metric name -> [(step, value), ...]."""
    root = pathlib.Path(log_dir) / exp_name / "scalars"
    scalars = {}
    for path in root.rglob("*.csv"):
        name = path.relative_to(root).with_suffix("").as_posix()
        rows = [line.split(",") for line in path.read_text().splitlines() if line]
        scalars[name] = [(int(step), float(value)) for step, value in rows]
    return scalars


class CountingSerialEnv(SerialEnv):
    """A real batched env that records how often close() reaches it (closing it twice raises)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.close_calls = 0

    def close(self, *, raise_if_closed=True):
        self.close_calls += 1
        super().close(raise_if_closed=raise_if_closed)
