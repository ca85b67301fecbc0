"""Test-wide settings: everything local, offline and on loopback."""

from __future__ import annotations

import os

import pytest

# Set before any test module imports W&B or Ray.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.pop("WANDB_API_KEY", None)


@pytest.fixture(autouse=True)
def no_shared_wandb_service():
    """Keep a W&B service that a test started in this process away from the processes started later.

    ``wandb.init`` in the pytest process publishes its service in ``WANDB_SERVICE``; a subprocess
    (``xdrl train``) or a Ray worker that inherits it logs through that service instead of its own,
    and a run it leaves open there (a SIGKILLed process) blocks the resume ("run ID is in use").
    Real runs start from a shell without it.
    """
    yield
    os.environ.pop("WANDB_SERVICE", None)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray on loopback with 4 logical CPUs and 2 logical GPUs, shut down after the module."""
    import ray

    ray.init(num_cpus=4, num_gpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
