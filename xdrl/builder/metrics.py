"""One funnel for every metric: the loggers, ``metrics.jsonl`` and whoever listens per iteration.

TorchRL's trainer sends each metric a hook returns to ``trainer.logger``. The
:class:`MetricsRouter` is that logger: it collects the iteration's row and, when
the iteration completes, appends it to ``metrics.jsonl`` (flushed to the operating
system) and then forwards it to the real loggers (W&B, CSV). The file is fsynced before
each trainer checkpoint (:meth:`MetricsRouter.sync`). An iteration that fails half-way
(an exception, Ctrl-C) reaches none of the sinks: W&B, the metrics file and the
Tune bridge see the same names, the same numbers and the same iterations.

After a restore, the lineage rule of :mod:`xdrl.records.lineage` applies: the
first record of an iteration stands. :meth:`MetricsRouter.resume` brings every
sink level with ``metrics.jsonl`` and remembers the rows of the iterations that
training re-runs; for those, :attr:`MetricsRouter.last_row` is the stored row
and no sink is written again.
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.record.loggers import Logger

from xdrl._compat import register_op_first
from xdrl.records.lineage import FRAMES, Lineage, jsonl_text, read_jsonl

#: Kept for readers of the metrics file: the lineage module owns the format.
read_metrics_file = read_jsonl


def _scalar(value: Any) -> float | int:
    if isinstance(value, torch.Tensor):
        value = value.item()
    return value if isinstance(value, int) and not isinstance(value, bool) else float(value)


class MetricsRouter(Logger):
    """A TorchRL logger that fans metrics out and writes one JSON line per iteration.

    Stages: ``batch_process`` (first op) starts an iteration (:meth:`register`);
    :meth:`end_iteration` ends it: register it at ``post_steps_log`` after the
    metric hooks. It is a trainer module, so a checkpoint holds the iteration.

    Args:
        jsonl_path: the metrics file (appended to; created when needed).
        loggers: named TorchRL loggers, ``{"wandb": WandbLogger(...)}``.
    """

    def __init__(self, jsonl_path: str | pathlib.Path, loggers: dict[str, Logger] | None = None) -> None:
        self.jsonl_path = pathlib.Path(jsonl_path)
        self.named_loggers = dict(loggers or {})
        self.iteration = 0
        self.current: dict[str, Any] = {}
        #: The row that stands for the last completed iteration (see :mod:`xdrl.records.lineage`).
        self.last_row: dict[str, Any] | None = None
        #: What the records held when the run continued from a checkpoint.
        self.lineage = Lineage()
        # Per logger: the highest iteration it holds after a resume (it gets nothing up to there).
        self._held: dict[str, int] = {}
        # Scalars of the open iteration, for the loggers once it completes: (name, value, step, kwargs).
        self._pending: list[tuple[str, float | int, int | None, dict[str, Any]]] = []
        self._open = False
        #: Metrics of an event (a PBT exploit) that go into the next completed iteration's row only.
        self.next_row: dict[str, float | int] = {}
        super().__init__(exp_name="xdrl", log_dir=str(self.jsonl_path.parent))

    @property
    def loggers(self) -> list[Logger]:
        """The wrapped loggers (what ``find_wandb_logger`` looks through)."""
        return list(self.named_loggers.values())

    def _create_experiment(self) -> None:
        return None

    def _active(self) -> list[Logger]:
        """The loggers that take this iteration's records (none while a re-run iteration's record stands)."""
        if self.lineage.holds(self.iteration):
            return []
        return [lg for name, lg in self.named_loggers.items() if self.iteration > self._held.get(name, 0)]

    # TorchRL Logger interface -------------------------------------------------
    def log_scalar(self, name: str, value: float, step: int | None = None, **kwargs: Any) -> None:
        value = _scalar(value)
        if not self._open:  # outside an iteration: straight through
            for logger in self._active():
                logger.log_scalar(name, value, step=step, **kwargs)
            return
        self.current[name] = value
        self._pending.append((name, value, step, kwargs))

    def log_video(self, name: str, video: torch.Tensor, step: int | None = None, **kwargs: Any) -> None:
        for logger in self._active():
            logger.log_video(name, video, step=step, **kwargs)

    def log_hparams(self, cfg: Any) -> None:
        for logger in self.loggers:
            logger.log_hparams(cfg)

    def log_histogram(self, name: str, data: Sequence, **kwargs: Any) -> None:
        for logger in self._active():
            logger.log_histogram(name, data, **kwargs)

    def __repr__(self) -> str:
        return f"MetricsRouter({self.jsonl_path}, loggers={list(self.named_loggers)})"

    # Iteration boundaries -----------------------------------------------------
    def begin_iteration(self, batch: TensorDictBase) -> TensorDictBase:
        self.iteration += 1
        self.current = {}
        self._pending = []
        self._open = True
        return batch

    def end_iteration(self, _batch: TensorDictBase | None = None) -> None:
        """Publish the iteration: ``metrics.jsonl`` first (written through to the OS), then the loggers."""
        self._open = False
        if self.next_row:
            step = self._pending[-1][2] if self._pending else None  # the step the iteration's metrics have
            for name, value in self.next_row.items():
                self.current[name] = _scalar(value)
                self._pending.append((name, _scalar(value), step, {}))
            self.next_row = {}
        pending, self._pending = self._pending, []
        fresh = {key: value for key, value in self.current.items() if not _is_nan(value)}
        self.last_row = self.lineage.row_of_record(self.iteration, fresh)
        if self.lineage.holds(self.iteration):
            return  # a re-run iteration: its first record stands in every sink
        self.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
        # Written through to the OS, not fsynced: once the row is in the OS's cache a killed process
        # cannot lose it, which is as far as Tune's result.json goes too (its JSON logger flushes,
        # never fsyncs). An fsync per iteration cost 0.9-1.6 ms, a third of the hook set's
        # per-iteration time (benchmarks/hook_overhead.py); it now comes once per checkpoint (sync).
        with self.jsonl_path.open("a") as handle:
            handle.write(jsonl_text([fresh]))
        active = self._active()
        for name, value, step, kwargs in pending:
            if name in fresh:  # NaN stays out of every record, as it stays out of the file
                for logger in active:
                    logger.log_scalar(name, value, step=step, **kwargs)

    def sync(self) -> None:
        """Make the rows written so far durable (fsync): called before each trainer checkpoint.

        So that after a machine crash the file still holds every iteration the newest
        checkpoint covers, which is what a resume reads it for.
        """
        if self.jsonl_path.exists():
            with self.jsonl_path.open("rb") as handle:
                os.fsync(handle.fileno())

    def resume(self, restored: int) -> Lineage:
        """Continue after a checkpoint at iteration ``restored``: level every sink with ``metrics.jsonl``.

        The file loses a torn last line; W&B gets the rows it lost replayed from
        the file (same numbers, same steps: a killed process loses W&B's
        buffers); the CSV files are rewritten from it. The rows past ``restored``
        are the records of the iterations training re-runs: they stand.
        """
        self.iteration = restored
        self.lineage, rows = Lineage.at_restore(self.jsonl_path, restored)
        through = self.lineage.through
        for name, logger in self.named_loggers.items():
            self._held[name] = max(_level(logger, self.jsonl_path.parent, rows), through)
        return self.lineage

    # State (a trainer module, so that checkpoints hold the iteration) --------
    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.iteration = int(state_dict["iteration"])

    def register(self, trainer: Any, name: str = "metrics_router") -> None:
        """Become ``trainer.logger`` (and a checkpointed module); start each iteration before any other op."""
        trainer.logger = self
        trainer.register_module(name, self)
        register_op_first(trainer, "batch_process", self.begin_iteration)


def _level(logger: Logger, output_dir: pathlib.Path, rows: list[dict[str, Any]]) -> int:
    """Bring one logger level with the rows of ``metrics.jsonl``; returns the highest iteration it held."""
    from torchrl.record.loggers.csv import CSVLogger

    from xdrl.records.lineage import highest_iteration, iteration_of, rewrite_csv_scalars, wandb_held
    from xdrl.trainer_hooks.wandb_hooks import commit_row, find_wandb_logger

    if isinstance(logger, CSVLogger):
        rewrite_csv_scalars(output_dir, rows)
        return highest_iteration(rows)
    wandb_logger = find_wandb_logger(logger)
    if wandb_logger is None:
        raise TypeError(f"xdrl cannot tell which iterations a {type(logger).__name__} holds after a restore")
    run = wandb_logger.experiment
    held = wandb_held(output_dir, run.id, run)
    for row in rows:
        if iteration_of(row) > held:
            step = int(row.get(FRAMES, 0))
            for key, value in row.items():
                wandb_logger.log_scalar(key, value, step=step)
            commit_row(wandb_logger)
    return held


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
