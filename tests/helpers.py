"""Shared test plumbing: tiny budgets for the presets and running the real CLI."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]

#: Overrides that shrink each preset to a few seconds of training.
TINY = {
    "cartpole_ppo": ["collector.total_frames=512", "hooks.eval.interval_frames=256", "hooks.eval.max_steps=50"],
    "cartpole_dqn": [
        "collector.total_frames=768",
        "collector.init_random_frames=256",
        "algo.optim_steps_per_batch=8",
        "hooks.eval.interval_frames=256",
        "hooks.eval.max_steps=50",
    ],
    "pendulum_sac": [
        "collector.total_frames=600",
        "collector.init_random_frames=200",
        "algo.optim_steps_per_batch=10",
        "algo.batch_size=64",
        "hooks.eval.interval_frames=200",
        "hooks.eval.max_steps=50",
    ],
    "deep_sea_treasure_ppo": [
        "collector.total_frames=1024",
        "hooks.eval.interval_frames=512",
        "hooks.eval.max_steps=50",
        "algo.epochs=2",
    ],
}


def tiny(preset: str, *extra: str) -> list[str]:
    return [
        f"experiment={preset}",
        *TINY[preset],
        "hooks.policy_checkpoint.interval=1",
        "hooks.eval.episodes=2",
        *extra,
    ]


def xdrl_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "xdrl.cli", *args]


def run_xdrl(
    *args: str, timeout: float = 300, check: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the real ``xdrl`` CLI in a subprocess (offline W&B, loopback Ray; ``env`` replaces the environment)."""
    env = {**(env or os.environ), "WANDB_MODE": "offline", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    result = subprocess.run(xdrl_command(*args), capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    if check and result.returncode != 0:
        raise AssertionError(f"xdrl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def wait_until_finished(run_file: pathlib.Path, timeout: float = 30.0) -> pathlib.Path:
    """Wait for an offline W&B run file's exit record: wandb-core may still write it after ``finish()``."""
    import time

    from xdrl.records.wandb_files import read_run

    deadline = time.monotonic() + timeout
    while not read_run(run_file).finished and time.monotonic() < deadline:
        time.sleep(0.1)
    return run_file


def files_containing(needle: str, *roots: str | os.PathLike) -> list[pathlib.Path]:
    """Every file under ``roots`` whose bytes contain ``needle`` (a planted canary secret), as UTF-8.

    Walks each root without following links (a link's target is searched where it lives, if under a
    root), reads every regular file in full, in chunks, binary files too (pickles, W&B run files,
    Ray's uncompressed working-directory zips); a file that vanishes or cannot be read is skipped.
    Compressed or encoded copies (gzip, base64) are not decoded: plant canaries where they would show.
    Returns the paths, sorted: ``[]`` means no file holds the canary.
    """
    pattern = needle.encode()
    overlap = len(pattern) - 1
    found = []
    for root in roots:
        for directory, _, names in os.walk(root):
            for name in names:
                path = pathlib.Path(directory, name)
                try:
                    if path.is_symlink() or not path.is_file():
                        continue
                    with path.open("rb") as handle:
                        tail = b""
                        while chunk := handle.read(1 << 20):
                            if pattern in tail + chunk:
                                found.append(path)
                                break
                            tail = chunk[-overlap:] if overlap else b""
                except OSError:
                    continue
    return sorted(found)
