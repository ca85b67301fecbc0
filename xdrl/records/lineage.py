"""The lineage rule of a run's records, and which iterations each record already holds.

A run (``xdrl train`` or a Tune trial) writes every iteration's metrics to
several records: ``metrics.jsonl``, W&B, the CSV logger and, for a trial, Tune
(``result.json``, ``progress.csv``, the Optuna study, the scheduler). After a
restore from a checkpoint at iteration K, training re-runs the iterations
K+1..M that a record may already hold. One rule decides what every record keeps:

    **The first record of an iteration stands.**

The re-run trains for real (the model goes on from the checkpoint), but the
records of iterations K+1..M are not written again: ``metrics.jsonl`` keeps its
rows; W&B and the CSV logger are brought level with ``metrics.jsonl`` (rows they
lost are replayed from it, the CSV files are rewritten from it); the Tune bridge
reports the stored row of each re-run iteration (so Tune's iteration counter and
its checkpoints go on), and the driver's result loggers drop results of
iterations they already wrote. Optuna and ASHA ignore a second value for a step
they already hold. Every record thus ends with iterations 1..N exactly once, with
the same numbers.

This rule, rather than "the re-run replaces", is the one every sink can keep:
Optuna's intermediate values, ASHA's rungs and an online W&B history cannot
take back a value they already hold.

``metrics.jsonl`` is the reference: it is appended (and flushed to the operating
system) at the end of each iteration, before any other sink gets the row, so a
killed process leaves it holding at least what the others hold; it is fsynced
before each checkpoint, so after a machine crash it still holds every iteration
the newest checkpoint covers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
from collections.abc import Iterable
from typing import Any

from xdrl.records.atomic import atomic_write_text

_log = logging.getLogger(__name__)

#: The metric holding an iteration's number in every row.
ITERATION = "counters/iter"
#: The metric holding the frames collected so far (the step of every logger).
FRAMES = "counters/total_frames"
#: Namespace of the hyperparameters in force (``hooks.hparams``), read from the live trainer: ``hparams/algo.lr``.
HPARAMS = "hparams/"
#: Tune's own iteration counter in ``result.json`` rows.
TUNE_ITERATION = "training_iteration"
#: Where each record lives in a run directory.
METRICS_FILE = "metrics.jsonl"
TUNE_RESULT_FILE = "result.json"
CSV_SCALARS = pathlib.Path("csv") / "scalars"


def read_jsonl(path: str | pathlib.Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file (``metrics.jsonl``, Tune's ``result.json``); a torn last line is ignored.

    A torn line is what a crash, or a writer still at work, leaves.

    Examples:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.jsonl"
        >>> _ = path.write_text('{"counters/iter": 1}\\n{"counters/it')
        >>> read_jsonl(path)
        [{'counters/iter': 1}]
    """
    path = pathlib.Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def jsonl_text(rows: Iterable[dict[str, Any]]) -> str:
    """The text of a JSON-lines file holding ``rows`` (what the router appends, line by line)."""
    return "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)


def iteration_of(row: dict[str, Any], key: str = ITERATION) -> int:
    return int(row.get(key, 0) or 0)


def highest_iteration(rows: Iterable[dict[str, Any]], key: str = ITERATION) -> int:
    """The highest iteration number among ``rows`` (0 for none)."""
    return max((iteration_of(row, key) for row in rows), default=0)


def wandb_held(output_dir: pathlib.Path, run_id: str, run: Any = None) -> int:
    """The highest iteration the W&B run already holds (0 for a new run).

    Offline runs are read back from their run files (every attempt's run
    directory); an online run from the summary of the resumed ``run``.
    """
    from xdrl.records.wandb_files import find_run_files, read_run

    highest = 0
    for path in find_run_files(output_dir / "wandb", run_id):
        highest = max(highest, highest_iteration(read_run(path).history))
    summary = getattr(run, "summary", None)
    if summary is not None:
        try:
            highest = max(highest, int(summary.get(ITERATION, 0) or 0))
        except (TypeError, ValueError, AttributeError):
            pass
    return highest


def tune_held(trial_dir: str | pathlib.Path) -> int:
    """The highest Tune iteration a trial's ``result.json`` already holds (0 when there is none)."""
    return highest_iteration(read_jsonl(pathlib.Path(trial_dir) / TUNE_RESULT_FILE), TUNE_ITERATION)


def rewrite_csv_scalars(output_dir: pathlib.Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite the CSV logger's scalar files from the rows of record.

    TorchRL's ``CSVLogger`` writes one ``step,value`` file per metric, line by
    line, so a crash can leave some files an iteration ahead of others. The
    files are rebuilt from ``metrics.jsonl`` instead of being patched: after this,
    each holds exactly the iterations of ``rows``, in TorchRL's format.
    """
    directory = output_dir / CSV_SCALARS
    if not directory.is_dir():
        return
    lines: dict[pathlib.Path, list[str]] = {path: [] for path in directory.rglob("*.csv")}
    for row in rows:
        step = int(row.get(FRAMES, 0))
        for key, value in row.items():
            lines.setdefault(directory / f"{key}.csv", []).append(f"{step},{float(value)}\n")
    for path, content in lines.items():
        atomic_write_text(path, "".join(content))


@dataclasses.dataclass
class Lineage:
    """What a run's records hold when it continues after a checkpoint at iteration ``restored``.

    Attributes:
        restored: the iteration the checkpoint was saved at (0: from the beginning).
        recorded: the rows ``metrics.jsonl`` holds past ``restored``: the records
            of the iterations training is about to re-run, which stand.
    """

    restored: int = 0
    recorded: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def through(self) -> int:
        """The highest iteration every record holds (or is brought level to) at the restore."""
        return max(self.recorded, default=self.restored)

    def holds(self, iteration: int) -> bool:
        """Whether the records already hold ``iteration`` (a re-run iteration)."""
        return iteration in self.recorded

    def row_of_record(self, iteration: int, fresh: dict[str, Any]) -> dict[str, Any]:
        """The row that stands for ``iteration``: the stored one if there is one, else ``fresh``."""
        return self.recorded.get(iteration, fresh)

    @classmethod
    def at_restore(cls, metrics_path: pathlib.Path, restored: int) -> tuple[Lineage, list[dict[str, Any]]]:
        """Read ``metrics.jsonl`` for a restore at ``restored``; drop a torn last line from the file.

        Returns:
            The lineage, and every row of the file (for sinks to catch up from).
        """
        rows = read_jsonl(metrics_path)
        if metrics_path.exists() and metrics_path.read_text() != jsonl_text(rows):
            # Without the torn line, so that the next append starts on a fresh line.
            atomic_write_text(metrics_path, jsonl_text(rows))
        recorded = {iteration_of(r): r for r in rows if iteration_of(r) > restored}
        if recorded:
            _log.info(
                "iterations %d-%d are re-run from the checkpoint of iteration %d; their first records stand",
                min(recorded),
                max(recorded),
                restored,
            )
        return cls(restored, recorded), rows
