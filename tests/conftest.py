"""Test-wide settings: everything local, offline and on loopback."""

from __future__ import annotations

import os

# Set before any test module imports W&B or Ray.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.pop("WANDB_API_KEY", None)
