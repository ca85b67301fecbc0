"""`xdrl report` and `xdrl confirm` on a real 3-trial CartPole sweep at tiny budgets."""

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from tests.distributed.helpers import experiment, trial_dirs
from xdrl.builder.metrics import read_metrics_file
from xdrl.distributed import confirm, tuner
from xdrl.report.build import build_report, terminal_summary

pytestmark = pytest.mark.slow

METRIC = "eval/deterministic/reward/episode_reward_mean"


def snapshot(directory):
    """Content hash of every file of an experiment, its report/ excepted."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and "report" not in p.relative_to(directory).parts
    }


def assert_png(path, min_bytes=8_000):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > min_bytes
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
        assert width >= 400 and height >= 250
        colors = np.asarray(image.convert("RGB")).reshape(-1, 3)
        assert len(np.unique(colors, axis=0)) > 20  # not a blank canvas


@pytest.fixture(scope="module")
def sweep(local_ray, tmp_path_factory):
    storage = tmp_path_factory.mktemp("report")
    plan = tuner.plan(experiment(storage, "sweep", "search.num_samples=3", "search.scheduler=none"))
    assert not tuner.run(plan).errors
    return storage / "sweep"


def test_report_tables_hold_the_trials_numbers(sweep):
    before = snapshot(sweep)
    report = build_report(sweep)
    assert snapshot(sweep) == before  # reading never modifies the experiment
    assert len(report.rows) == 3 and report.data.finished
    bests = [row[f"best {METRIC}"] for row in report.rows]
    assert bests == sorted(bests, reverse=True)
    for row in report.rows:
        (trial_dir,) = [d for d in trial_dirs(sweep) if row["trial"] in d.name]
        values = [r[METRIC] for r in read_metrics_file(trial_dir / "metrics.jsonl") if METRIC in r]
        assert row[f"best {METRIC}"] == max(values) and row[f"last {METRIC}"] == values[-1]
        assert row["frames"] == 512 and row["status"] == "TERMINATED"
        params = json.loads((trial_dir / "params.json").read_text())
        assert {k.removeprefix("param "): v for k, v in row.items() if k.startswith("param ")} == params
    best = report.best
    assert best.trial_id == report.rows[0]["trial"]
    assert report.best_command.startswith("xdrl train experiment=cartpole_ppo ")
    for key, value in best.params.items():
        assert f"{key}={value}" in report.best_command
    assert set(report.figures) == {"learning_curves", "optimization_history", "param_importances"}
    for path in report.figures.values():
        assert_png(path)
    markdown = report.markdown.read_text()
    assert f"| {report.rows[0]['trial']} | TERMINATED |" in markdown
    assert "![Learning curves](learning_curves.png)" in markdown and report.best_command in markdown
    summary = terminal_summary(report)
    assert summary.splitlines()[1].startswith(report.rows[0]["trial"])


def test_confirm_reruns_the_top_configurations_over_seeds(sweep):
    summary = confirm.confirm(sweep, top=2, seeds=2, episodes=2)
    rows = summary["candidates"]
    assert [r["rank"] for r in rows] == [1, 2]
    report = build_report(sweep)
    assert rows[0]["search_trial"] == report.rows[0]["trial"] and rows[1]["search_trial"] == report.rows[1]["trial"]
    for row in rows:
        assert len(row["returns"]) == 2
        assert row["iqm"] == pytest.approx(np.mean(row["returns"]))  # two values: nothing trimmed
        assert row["ci95"][0] <= row["iqm"] <= row["ci95"][1]
    (pair,) = [p for p in summary["probability_of_improvement"] if (p["x"], p["y"]) == (1, 2)]
    wins = np.mean([[a > b for b in rows[1]["returns"]] for a in rows[0]["returns"]])
    ties = np.mean([[a == b for b in rows[1]["returns"]] for a in rows[0]["returns"]])
    assert pair["p"] == pytest.approx(wins + 0.5 * ties)
    assert "## Seeds: the best configurations again" in report.markdown.read_text()
    assert len(trial_dirs(sweep.parent / "sweep-confirm")) == 4
