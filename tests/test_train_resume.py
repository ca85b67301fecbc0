"""`xdrl train` killed, interrupted and resumed: continuity of frames, counters, files and W&B."""

import json
import os
import signal
import subprocess
import time

import pytest

from tests.helpers import REPO, run_xdrl, xdrl_command
from xdrl.builder.metrics import read_metrics_file
from xdrl.records.wandb_files import find_run_files, read_run

pytestmark = pytest.mark.slow

FRAMES_PER_BATCH = 256
ITERATIONS = 12
ARGS = [
    "experiment=cartpole_dqn",
    f"collector.total_frames={FRAMES_PER_BATCH * ITERATIONS}",
    f"collector.frames_per_batch={FRAMES_PER_BATCH}",
    "collector.init_random_frames=256",
    "algo.optim_steps_per_batch=4",
    "hooks.eval.interval_frames=1024",
    "hooks.eval.max_steps=30",
    "hooks.policy_checkpoint.interval=1",
    "checkpoint.interval=2",
    "checkpoint.keep=2",
]


def _start(output_dir):
    env = {**os.environ, "WANDB_MODE": "offline"}
    return subprocess.Popen(
        xdrl_command("train", *ARGS, f"output_dir={output_dir}", "--no-progress"),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(predicate, process, timeout=240):
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"xdrl exited early ({process.returncode}):\n{process.stdout.read()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out")
        time.sleep(0.2)


def _checkpoint_iterations(output_dir):
    return sorted(json.loads(p.read_text())["iteration"] for p in (output_dir / "checkpoints").glob("trainer_*.json"))


def _wandb_rows(output_dir):
    runs = [read_run(p) for p in find_run_files(output_dir / "wandb")]
    # A SIGKILL can leave a run file that W&B never got to write (header only): nothing to sync there.
    runs = [r for r in runs if r.run_id is not None or r.history]
    assert len({r.run_id for r in runs}) == 1, "a resumed run must continue the same W&B run id"
    return runs, [row for run in runs for row in run.history]


def _assert_complete(output_dir, uninterrupted_keys=None):
    rows = read_metrics_file(output_dir / "metrics.jsonl")
    assert [r["counters/iter"] for r in rows] == list(range(1, ITERATIONS + 1))  # no duplicate, none missing
    assert [r["counters/total_frames"] for r in rows] == [FRAMES_PER_BATCH * i for i in range(1, ITERATIONS + 1)]
    if uninterrupted_keys is not None:
        assert [sorted(r) for r in rows] == uninterrupted_keys
    policies = sorted(p.name for p in (output_dir / "policies").glob("policy_step_*.pt"))
    assert policies == [f"policy_step_{n:08d}.pt" for n in range(1, ITERATIONS + 1)]
    assert _checkpoint_iterations(output_dir)[-1] == ITERATIONS
    runs, wandb_rows = _wandb_rows(output_dir)
    assert sorted(r["counters/iter"] for r in wandb_rows) == list(range(1, ITERATIONS + 1))
    by_iteration = {r["counters/iter"]: r for r in wandb_rows}
    for row in rows:  # W&B shows exactly the metrics file's numbers
        assert {k: by_iteration[row["counters/iter"]][k] for k in row} == row
    assert runs[-1].exit_code == 0
    return rows


@pytest.fixture(scope="module")
def uninterrupted_keys(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("straight") / "run"
    run_xdrl("train", *ARGS, f"output_dir={output_dir}", "--no-progress", check=True)
    return [sorted(r) for r in read_metrics_file(output_dir / "metrics.jsonl")]


def test_sigkill_then_resume_continues_without_gaps_or_duplicates(tmp_path, uninterrupted_keys):
    output_dir = tmp_path / "run"
    process = _start(output_dir)
    _wait_for(
        lambda: (output_dir / "checkpoints").exists() and max(_checkpoint_iterations(output_dir) or [0]) >= 6, process
    )
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    killed_at = len(read_metrics_file(output_dir / "metrics.jsonl"))
    assert 4 <= killed_at < ITERATIONS

    result = run_xdrl("train", "--resume", str(output_dir), "--no-progress", check=True)
    assert "resumed from:" in result.stdout
    _assert_complete(output_dir, uninterrupted_keys)


def test_sigint_checkpoints_finishes_wandb_then_resume_completes(tmp_path, uninterrupted_keys):
    output_dir = tmp_path / "run"
    process = _start(output_dir)
    _wait_for(lambda: len(read_metrics_file(output_dir / "metrics.jsonl")) >= 3, process)
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0, out
    assert "stopped early" in out
    rows = read_metrics_file(output_dir / "metrics.jsonl")
    assert _checkpoint_iterations(output_dir)[-1] == rows[-1]["counters/iter"] < ITERATIONS
    runs, _ = _wandb_rows(output_dir)
    assert runs[-1].exit_code == 0  # finished cleanly

    run_xdrl("train", "--resume", str(output_dir), "--no-progress", check=True)
    _assert_complete(output_dir, uninterrupted_keys)


def test_resume_of_a_finished_run_trains_nothing_more(tmp_path, capsys):
    from xdrl.cli import main

    output_dir = tmp_path / "run"
    args = [*ARGS[:1], "collector.total_frames=512", "collector.init_random_frames=0", "hooks.eval.interval_frames=0"]
    assert main(["train", *args, "logger=none", f"output_dir={output_dir}", "--no-progress"]) == 0
    before = (output_dir / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main(["train", "--resume", str(output_dir), "--no-progress"]) == 0
    assert "frames: 512" in capsys.readouterr().out
    assert (output_dir / "metrics.jsonl").read_text() == before


def test_existing_run_directory_is_not_overwritten(tmp_path):
    output_dir = tmp_path / "run"
    output_dir.mkdir()
    (output_dir / "config.yaml").write_text("name: x\n")
    result = run_xdrl("train", f"output_dir={output_dir}", "--no-progress")
    assert result.returncode == 2
    assert f"xdrl train --resume {output_dir}" in result.stderr
