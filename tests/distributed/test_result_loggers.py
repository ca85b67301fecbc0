"""Tune's result loggers under the lineage rule: one row per iteration, every metric in a column."""

import csv
import json
import pickle

from xdrl.distributed.result_loggers import FirstRecordCSVLogger, FirstRecordJsonLogger, result_loggers


class _Trial:
    """What the loggers read of Tune's Trial: its id, its directory, and whether it has a checkpoint
    to copy files back from (a storage that is not the local disk)."""

    def __init__(self, directory):
        self.trial_id, self.local_path, self.checkpoint, self.config = "t1", str(directory), None, {}

    def init_local_path(self):
        pass


def _result(iteration, reward, **extra):
    return {"training_iteration": iteration, "counters/iter": iteration, "reward": reward, **extra}


def _feed(loggers, trial, results):
    for result in results:
        for logger in loggers:
            logger.on_trial_result(0, [], trial, result)


def _files(directory):
    rows = [json.loads(line) for line in (directory / "result.json").read_text().splitlines()]
    with (directory / "progress.csv").open() as handle:
        table = list(csv.DictReader(handle))
    return rows, table


def test_re_reported_iterations_are_written_once_and_late_metrics_get_a_column(tmp_path):
    trial = _Trial(tmp_path)
    loggers = [
        logger for logger in result_loggers() if isinstance(logger, FirstRecordCSVLogger | FirstRecordJsonLogger)
    ]
    for logger in loggers:
        logger.on_trial_start(0, [], trial)
    # Iteration 3 brings the first evaluation; then the trial is restored from iteration 1 and
    # re-reports 2 and 3 (with other numbers), then goes on.
    _feed(loggers, trial, [_result(1, 0.1), _result(2, 0.2), _result(3, 0.3, eval=5.0)])
    _feed(loggers, trial, [_result(2, -1.0), _result(3, -1.0, eval=-1.0), _result(4, 0.4, eval=6.0)])
    rows, table = _files(tmp_path)
    assert [r["training_iteration"] for r in rows] == [1, 2, 3, 4]
    assert [r["reward"] for r in rows] == [0.1, 0.2, 0.3, 0.4]
    assert [int(r["training_iteration"]) for r in table] == [1, 2, 3, 4]
    assert [float(r["reward"]) for r in table] == [0.1, 0.2, 0.3, 0.4]
    assert [r["eval"] for r in table] == ["", "", "5.0", "6.0"]  # the column the evaluation needed


def test_a_restored_driver_continues_the_files_after_a_torn_line(tmp_path):
    trial = _Trial(tmp_path)
    # Tune pickles its callbacks with the run config before the experiment starts.
    pickled = pickle.dumps(result_loggers())
    first = [logger for logger in pickle.loads(pickled) if not type(logger).__name__.startswith("FirstRecordTBX")]
    for logger in first:
        logger.on_trial_start(0, [], trial)
    _feed(first, trial, [_result(1, 0.1), _result(2, 0.2, eval=5.0)])
    # The driver is killed in the middle of writing iteration 3.
    with (tmp_path / "result.json").open("a") as handle:
        handle.write('{"training_iteration": 3, "rew')
    with (tmp_path / "progress.csv").open("a") as handle:
        handle.write("0.3,3,")
    restored = [logger for logger in pickle.loads(pickled) if not type(logger).__name__.startswith("FirstRecordTBX")]
    assert restored[0].ledger is restored[1].ledger
    for logger in restored:
        logger.on_trial_start(0, [], trial)
    # Keys in another order than the header, as a restored trial's first result may have them.
    _feed(restored, trial, [{"eval": 5.0, **_result(2, -2.0)}, _result(3, 0.3, eval=5.5), _result(4, 0.4, eval=6.0)])
    rows, table = _files(tmp_path)
    assert [r["training_iteration"] for r in rows] == [1, 2, 3, 4]
    assert [r["reward"] for r in rows] == [0.1, 0.2, 0.3, 0.4]
    assert [(int(r["training_iteration"]), float(r["reward"])) for r in table] == [
        (1, 0.1),
        (2, 0.2),
        (3, 0.3),
        (4, 0.4),
    ]
    assert [r["eval"] for r in table] == ["", "5.0", "5.5", "6.0"]
