"""Tune's result loggers under xdrl's lineage rule: the first record of an iteration stands.

A restored trial re-runs the iterations between its checkpoint and the moment
it stopped, and reports each of them again (with its stored row, see
:class:`~xdrl.distributed.bridge.TuneReportHook`): that keeps Tune's iteration
counter and the checkpoints of the re-run going. Tune's own loggers would append
those results a second time to ``result.json``, ``progress.csv`` and the
TensorBoard events, and every reader of them (``ResultGrid``,
``ExperimentAnalysis``, ``xdrl report``) would see the iterations twice. These
subclasses of Tune's loggers drop a result whose ``training_iteration`` the
trial's records already hold; Optuna and ASHA already ignore a second value for
a step. They are Tune's own classes, so Tune adds no default loggers besides.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import pathlib
from typing import Any

from ray.air.constants import EXPR_PROGRESS_FILE
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

from xdrl._compat import KeepDriverLogCopy, restore_logger_file
from xdrl.records.atomic import atomic_write_text
from xdrl.records.lineage import TUNE_ITERATION, TUNE_RESULT_FILE, tune_held

_log = logging.getLogger(__name__)


class ResultLedger:
    """Decides once per result, for every logger, whether it is a trial's first record of its iteration.

    The highest iteration a trial's records hold is read from its ``result.json``
    the first time the ledger sees the trial in this driver (a resumed driver
    finds what the previous one wrote), then tracked in memory.
    """

    def __init__(self) -> None:
        self._held: dict[str, int] = {}
        self._current: dict[str, Any] | None = None
        self._accepted = False

    def accept(self, trial: Any, result: dict[str, Any]) -> bool:
        if result is self._current:  # the loggers are called one after the other with the same result
            return self._accepted
        iteration = result.get(TUNE_ITERATION)
        held = self._held.get(trial.trial_id)
        if held is None:
            held = tune_held(trial.local_path) if trial.local_path else 0
        self._accepted = iteration is None or int(iteration) > held
        if self._accepted and iteration is not None:
            held = int(iteration)
        elif not self._accepted:
            _log.debug("trial %s: iteration %s is already recorded, its first record stands", trial, iteration)
        self._held[trial.trial_id] = held
        self._current = result
        return self._accepted

    def __getstate__(self) -> dict[str, Any]:
        # Pickled with the run config: a restored driver reads the records again.
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()


class _FirstRecordStands(KeepDriverLogCopy):
    """Mixin for a Tune ``LoggerCallback``: log only results the ledger accepts."""

    def __init__(self, ledger: ResultLedger) -> None:
        super().__init__()
        self.ledger = ledger

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        if self.ledger.accept(trial, result):
            super().log_trial_result(iteration, trial, result)


class FirstRecordJsonLogger(_FirstRecordStands, JsonLoggerCallback):
    """Tune's ``result.json`` writer, one line per iteration."""

    def log_trial_start(self, trial: Any) -> None:
        super().log_trial_start(trial)
        _drop_torn_line(pathlib.Path(trial.local_path) / TUNE_RESULT_FILE)


class FirstRecordCSVLogger(_FirstRecordStands, CSVLoggerCallback):
    """Tune's ``progress.csv`` writer, one row per iteration, with a column for every metric.

    Tune's own writer fixes the columns from a trial's first result and, when a
    restored driver continues the file, from the first result after the restore,
    without reading the header already there: metrics that first appear later (the
    evaluation of iteration 3, the search metric) never get a column, and the rows
    written after a restore land under the wrong columns. This writer keeps the
    file's header, and when a result brings a new metric it rewrites the file
    (atomically) with the column added.
    """

    def __init__(self, ledger: ResultLedger) -> None:
        super().__init__(ledger)
        # The file and writer of each trial: this class writes the file itself, Tune's parent
        # class only decides when (and its own bookkeeping stays unused).
        self._handles: dict[Any, Any] = {}
        self._writers: dict[Any, csv.DictWriter] = {}

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        from ray.tune.utils import flatten_dict

        if not self.ledger.accept(trial, result):
            return
        row = flatten_dict({k: v for k, v in result.items() if k != "config"}, delimiter="/")
        writer = self._writers.get(trial)
        if writer is None or any(key not in writer.fieldnames for key in row):
            writer = self._open(trial, row)
        writer.writerow(row)
        self._handles[trial].flush()

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        self._writers.pop(trial, None)
        handle = self._handles.pop(trial, None)
        if handle is not None:
            handle.close()

    def _open(self, trial: Any, row: dict[str, Any]) -> csv.DictWriter:
        """(Re)open the trial's file for appending, with a header that has a column for every key of ``row``."""
        if trial in self._handles:
            self._handles.pop(trial).close()
        else:
            trial.init_local_path()
            restore_logger_file(self, EXPR_PROGRESS_FILE, trial)
        path = pathlib.Path(trial.local_path, EXPR_PROGRESS_FILE)
        original = path.read_text() if path.exists() else None
        text = (original or "")[: (original or "").rfind("\n") + 1]  # without a torn last line
        columns = next(csv.reader(io.StringIO(text)), [])
        added = [key for key in row if key not in columns]
        if original is None or added or text != original:
            buffer = io.StringIO()
            rewritten = csv.DictWriter(buffer, columns + added, extrasaction="ignore")
            rewritten.writeheader()
            rewritten.writerows(csv.DictReader(io.StringIO(text)))
            atomic_write_text(path, buffer.getvalue())
        self._handles[trial] = path.open("a")
        self._writers[trial] = csv.DictWriter(self._handles[trial], columns + added)
        return self._writers[trial]


class FirstRecordTBXLogger(_FirstRecordStands, TBXLoggerCallback):
    """Tune's TensorBoard events, one step per iteration."""


def _drop_torn_line(path: pathlib.Path) -> None:
    """Cut the half line a driver killed mid-write left, so that the next result starts a line of its own.

    Tune appends (``O_APPEND``): its open handle goes on writing at the new end.
    """
    if not path.exists():
        return
    data = path.read_bytes()
    complete = data.rfind(b"\n") + 1
    if complete < len(data):
        _log.warning(
            "%s: dropping a torn last line (%d bytes) left by an interrupted driver", path, len(data) - complete
        )
        os.truncate(path, complete)


def result_loggers() -> list[Any]:
    """Tune's result loggers, all deciding through one :class:`ResultLedger`."""
    ledger = ResultLedger()
    return [FirstRecordCSVLogger(ledger), FirstRecordJsonLogger(ledger), FirstRecordTBXLogger(ledger)]
