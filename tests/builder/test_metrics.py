"""The metric router: one row per iteration to every sink, levelled after a resume."""

import json

from torchrl.record.loggers.csv import CSVLogger

from tests.trainer_hooks.helpers import read_csv_scalars
from xdrl.builder.metrics import MetricsRouter, read_metrics_file


def _iteration(router, iteration, frames, reward=None):
    router.begin_iteration(None)
    router.log_scalar("counters/iter", iteration, step=frames)
    router.log_scalar("counters/total_frames", frames, step=frames)
    router.log_scalar("collection/reward/reward_mean", iteration / 10 if reward is None else reward, step=frames)
    router.end_iteration()
    return router.last_row


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


def test_nan_reaches_no_record(tmp_path):
    router = MetricsRouter(tmp_path / "metrics.jsonl", {"csv": CSVLogger("csv", log_dir=str(tmp_path))})
    _iteration(router, 1, 100, reward=float("nan"))
    assert "collection/reward/reward_mean" not in read_metrics_file(tmp_path / "metrics.jsonl")[0]
    assert "collection/reward/reward_mean" not in read_csv_scalars(tmp_path, "csv")


def test_after_a_restore_the_first_record_stands_in_every_sink(tmp_path):
    path = tmp_path / "metrics.jsonl"
    first = MetricsRouter(path, {"csv": CSVLogger("csv", log_dir=str(tmp_path))})
    for i in range(1, 5):
        _iteration(first, i, 100 * i)
    # The CSV files lost iterations 3-4 but one file is a row ahead of the others (a crash between
    # two CSV writes); the metrics file got a torn fifth line.
    csv_dir = tmp_path / "csv" / "scalars"
    for file in csv_dir.rglob("*.csv"):
        file.write_text("".join(line + "\n" for line in file.read_text().splitlines()[:2]))
    with (csv_dir / "counters" / "total_frames.csv").open("a") as handle:
        handle.write("300,300.0\n")
    with path.open("a") as handle:
        handle.write('{"counters/iter": 5, "coun')

    resumed = MetricsRouter(path, {"csv": CSVLogger("csv", log_dir=str(tmp_path))})
    lineage = resumed.resume(2)  # the checkpoint was at iteration 2
    assert sorted(lineage.recorded) == [3, 4] and lineage.through == 4
    # Training re-runs 3 and 4 with other numbers, then goes on: the re-run's rows are the stored ones.
    reported = [_iteration(resumed, i, 100 * i, reward=-1.0) for i in range(3, 7)]
    rows = read_metrics_file(path)
    assert [r["counters/iter"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["collection/reward/reward_mean"] for r in rows] == [0.1, 0.2, 0.3, 0.4, -1.0, -1.0]
    assert reported == rows[2:]  # what the bridge reports: the rows of record
    assert all(json.loads(line) for line in path.read_text().splitlines())
    csv = read_csv_scalars(tmp_path, "csv")
    for key in rows[0]:
        assert csv[key] == [(r["counters/total_frames"], float(r[key])) for r in rows]
