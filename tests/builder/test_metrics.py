"""The metric router: one row per iteration to every sink, levelled after a resume."""

import json

from torchrl.record.loggers.csv import CSVLogger

from tests.trainer_hooks.helpers import read_csv_scalars
from xdrl.builder.metrics import MetricsRouter, read_metrics_file


def _iteration(router, iteration, frames):
    router.begin_iteration(None)
    router.log_scalar("counters/iter", iteration, step=frames)
    router.log_scalar("counters/total_frames", frames, step=frames)
    router.log_scalar("collection/reward/reward_mean", iteration / 10, step=frames)
    router.end_iteration()


def test_rows_reach_the_file_and_the_loggers(tmp_path):
    router = MetricsRouter(tmp_path / "metrics.jsonl", {"csv": CSVLogger("csv", log_dir=str(tmp_path))})
    for i in (1, 2):
        _iteration(router, i, 100 * i)
    rows = read_metrics_file(tmp_path / "metrics.jsonl")
    assert rows == [
        {"counters/iter": 1, "counters/total_frames": 100, "collection/reward/reward_mean": 0.1},
        {"counters/iter": 2, "counters/total_frames": 200, "collection/reward/reward_mean": 0.2},
    ]
    assert read_csv_scalars(tmp_path, "csv")["counters/iter"] == [(100, 1.0), (200, 2.0)]
    assert router.last_row == rows[-1]


def test_torn_last_line_is_dropped_and_sinks_are_levelled(tmp_path):
    path = tmp_path / "metrics.jsonl"
    first = MetricsRouter(path, {"csv": CSVLogger("csv", log_dir=str(tmp_path))})
    for i in range(1, 5):
        _iteration(first, i, 100 * i)
    # The CSV files lost iterations 3-4 (say, an OS crash); the metrics file got a torn fifth line.
    csv_dir = tmp_path / "csv" / "scalars"
    for file in csv_dir.rglob("*.csv"):
        file.write_text("".join(line + "\n" for line in file.read_text().splitlines()[:2]))
    with path.open("a") as handle:
        handle.write('{"counters/iter": 5, "coun')

    resumed = MetricsRouter(path, {"csv": CSVLogger("csv", log_dir=str(tmp_path))})
    resumed.prepare_resume(2)  # the checkpoint was at iteration 2
    resumed.catch_up("csv", held=2)
    for i in range(3, 7):  # training re-runs 3 and 4, then goes on
        _iteration(resumed, i, 100 * i)
    rows = read_metrics_file(path)
    assert [r["counters/iter"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(json.loads(line) for line in path.read_text().splitlines())
    csv_rows = read_csv_scalars(tmp_path, "csv")["counters/iter"]
    assert [v for _, v in csv_rows] == [1, 2, 3, 4, 5, 6]
