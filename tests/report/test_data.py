"""Reading Tune's experiment state while Tune may be rewriting it in place."""

import json
import pickle
import threading
import time

import pytest

from xdrl.report.data import ExperimentStateError, tune_state

STATE_NAME = "experiment_state-2025-01-01_00-00-00.json"


def state_text(*trials):
    """An experiment state in Tune's layout: per trial, its JSON state and its runtime metadata as strings."""
    entries = [
        [
            json.dumps(
                {"trial_id": trial_id, "status": status, "config": {"lr": lr}, "relative_logdir": f"t_{trial_id}"}
            ),
            json.dumps({"num_failures": failures}),
        ]
        for trial_id, status, lr, failures in trials
    ]
    return json.dumps({"trial_data": entries, "runner_data": {"_iteration": 7}}, indent=2)


EXPECTED = {
    "a0001": {"status": "TERMINATED", "config": {"lr": 0.001}, "dirname": "t_a0001", "failures": 0},
    "a0002": {"status": "RUNNING", "config": {"lr": 0.01}, "dirname": "t_a0002", "failures": 2},
}
FULL = state_text(("a0001", "TERMINATED", 0.001, 0), ("a0002", "RUNNING", 0.01, 2))


def test_tune_state_reads_the_newest_state(tmp_path):
    assert tune_state(tmp_path) == {}  # Tune has not saved anything yet
    (tmp_path / "experiment_state-2024-12-31_23-59-59.json").write_text(state_text(("old", "PENDING", 1.0, 0)))
    (tmp_path / STATE_NAME).write_text(FULL)
    assert tune_state(tmp_path) == EXPECTED


def test_tune_state_waits_for_a_torn_state_to_be_completed(tmp_path):
    path = tmp_path / STATE_NAME
    path.write_text(FULL[: len(FULL) // 2])  # what a reader sees in the middle of Tune's in-place write
    with pytest.raises(json.JSONDecodeError):
        json.loads(path.read_text())

    def finish_the_write():
        time.sleep(0.3)
        path.write_text(FULL)

    writer = threading.Thread(target=finish_the_write)
    start = time.monotonic()
    writer.start()
    try:
        assert tune_state(tmp_path) == EXPECTED
    finally:
        writer.join()
    assert time.monotonic() - start >= 0.3  # it did wait for the writer, not read a stale copy


def test_tune_state_names_a_state_that_stays_torn(tmp_path):
    path = tmp_path / STATE_NAME
    path.write_text(FULL[:-40])
    start = time.monotonic()
    with pytest.raises(
        ExperimentStateError, match=r"experiment_state-2025-01-01_00-00-00\.json.*after 3 reads"
    ) as info:
        tune_state(tmp_path, attempts=3, delay=0.05)
    assert time.monotonic() - start >= 0.1  # two waits between three reads
    assert info.value.path == path
    # Callers that treat an unreadable state as "Tune is writing it" (tests/distributed/helpers.py) still catch it.
    assert isinstance(info.value, json.JSONDecodeError)
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.path, str(copy)) == (path, str(info.value))
