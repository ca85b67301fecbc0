"""``xdrl demo`` through the real CLI: what it prints is what its run wrote."""

import pathlib
import re

import pytest
import torch
import yaml

from tests.helpers import run_xdrl
from xdrl.records.lineage import read_jsonl
from xdrl.records.wandb_files import find_run_files, read_run

pytestmark = pytest.mark.slow

EVAL_RETURN = "eval/deterministic/reward/episode_reward_mean"


def _printed(stdout: str, pattern: str) -> tuple[str, ...]:
    found = re.search(pattern, stdout, re.MULTILINE)
    assert found, f"no line matching {pattern!r} in:\n{stdout}"
    return found.groups()


def test_demo_prints_what_its_run_wrote(tmp_path):
    out = tmp_path / "demo run"
    result = run_xdrl("demo", "--frames", "1024", "--out", str(out), check=True)
    frames, iterations = map(int, _printed(result.stdout, r"^frames: (\d+)  iterations: (\d+)$"))
    (last_eval,) = map(float, _printed(result.stdout, r"^last deterministic evaluation return: (\S+)$"))
    (policies,) = map(pathlib.Path, _printed(result.stdout, r"^policy checkpoints: (.+)$"))
    wandb_mode, wandb_dir = _printed(result.stdout, r"^W&B run \((offline|online)\): (.+)$")

    # The run of `xdrl train experiment=cartpole_ppo`, in --out: its config, metrics and trainer checkpoints.
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["name"] == "cartpole_ppo" and config["collector"]["total_frames"] == 1024
    assert (out / "checkpoints").is_dir()
    rows = read_jsonl(out / "metrics.jsonl")
    assert (frames, iterations) == (1024, 4) == (rows[-1]["counters/total_frames"], len(rows))
    assert [row["counters/iter"] for row in rows] == [1, 2, 3, 4]
    # Four evaluations over any budget: here one per iteration; the printed return is the last one.
    evaluations = [row[EVAL_RETURN] for row in rows if EVAL_RETURN in row]
    assert len(evaluations) == 4
    assert last_eval == pytest.approx(evaluations[-1], abs=0.05)

    # Four policy files, the last one of the trained policy after every frame.
    assert policies == out / "policies"
    files = sorted(policies.iterdir())
    assert [f.name for f in files] == [f"policy_step_{n:08d}.pt" for n in (1, 2, 3, 4)]
    last = torch.load(files[-1])
    assert last["collected_frames"] == frames
    assert last["meta"]["experiment"] == "cartpole_ppo"

    # The offline W&B run: one row per iteration, the same numbers as metrics.jsonl.
    assert wandb_mode == "offline" and pathlib.Path(wandb_dir) == out / "wandb"
    (run_file,) = find_run_files(wandb_dir, config["logger"]["run_id"])
    records = read_run(run_file)
    assert records.finished and records.exit_code == 0
    assert (records.project, records.name) == ("xdrl-demo", "demo")
    assert [row["counters/iter"] for row in records.history] == [1, 2, 3, 4]
    assert records.history[-1][EVAL_RETURN] == pytest.approx(last_eval, abs=0.05)
    for row, stored in zip(records.history, rows, strict=True):
        assert row["counters/total_frames"] == stored["counters/total_frames"]


def test_demo_refuses_an_existing_run_directory(tmp_path, capsys):
    from xdrl.cli import main  # the console script's entry point, in this process

    (tmp_path / "config.yaml").write_text("name: earlier\n")
    assert main(["demo", "--frames", "1024", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "output_dir" in error and f"xdrl train --resume {tmp_path}" in error
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]
