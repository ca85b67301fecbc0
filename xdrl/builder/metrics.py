"""One funnel for every metric: the loggers, ``metrics.jsonl`` and whoever listens per iteration.

TorchRL's trainer sends each metric a hook returns to ``trainer.logger``. The
:class:`MetricsRouter` is that logger: it forwards every scalar to the real
loggers (W&B, CSV) and collects the iteration's row, which it appends to
``metrics.jsonl`` at the end of the iteration. The loggers get an iteration's
scalars at that moment too, so an iteration that fails half-way (an exception,
Ctrl-C) reaches none of the sinks: W&B, the metrics file and the Tune bridge
see the same names, the same numbers and the same iterations.

After a resume from a checkpoint at iteration K, every sink ends up holding
each iteration exactly once, with the numbers of ``metrics.jsonl`` (fsynced at
the end of every iteration, before any checkpoint, so it holds at least up to K):
:meth:`MetricsRouter.catch_up` replays to a sink the rows of the file it lost
(W&B buffers die with a killed process), and the re-run iterations the file
already holds are not sent again.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.record.loggers import Logger


def _scalar(value: Any) -> float | int:
    if isinstance(value, torch.Tensor):
        value = value.item()
    return value if isinstance(value, int) and not isinstance(value, bool) else float(value)


def read_metrics_file(path: str | pathlib.Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file (``metrics.jsonl``, Tune's ``result.json``); a torn last line is ignored.

    A torn line is what a crash, or a writer still at work, leaves.
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


class MetricsRouter(Logger):
    """A TorchRL logger that fans metrics out and writes one JSON line per iteration.

    Stages: ``batch_process`` (first op) starts an iteration (:meth:`register`);
    :meth:`end_iteration` ends it: register it at ``post_steps_log`` after the
    metric hooks.

    Args:
        jsonl_path: the metrics file (appended to; created when needed).
        loggers: named TorchRL loggers, ``{"wandb": WandbLogger(...)}``.
    """

    def __init__(self, jsonl_path: str | pathlib.Path, loggers: dict[str, Logger] | None = None) -> None:
        self.jsonl_path = pathlib.Path(jsonl_path)
        self.named_loggers = dict(loggers or {})
        self.iteration = 0
        self.current: dict[str, Any] = {}
        self.last_row: dict[str, Any] | None = None
        # Per sink ("jsonl" and each logger name): highest iteration it already holds.
        self.skip_through: dict[str, int] = {}
        # Scalars of the open iteration, for the loggers once it completes: (name, value, step, kwargs).
        self._pending: list[tuple[str, float | int, int | None, dict[str, Any]]] = []
        self._open = False
        super().__init__(exp_name="xdrl", log_dir=str(self.jsonl_path.parent))

    @property
    def loggers(self) -> list[Logger]:
        """The wrapped loggers (what ``find_wandb_logger`` looks through)."""
        return list(self.named_loggers.values())

    def _create_experiment(self) -> None:
        return None

    def _active(self) -> list[Logger]:
        return [lg for name, lg in self.named_loggers.items() if self.iteration > self.skip_through.get(name, 0)]

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
        self._open = False
        active = self._active()
        for name, value, step, kwargs in self._pending:
            for logger in active:
                logger.log_scalar(name, value, step=step, **kwargs)
        self._pending = []
        row = {key: value for key, value in self.current.items() if not _is_nan(value)}
        self.last_row = row
        if self.iteration > self.skip_through.get("jsonl", 0):
            self.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
            with self.jsonl_path.open("a") as handle:
                handle.write(json.dumps(row, sort_keys=True) + "\n")
                handle.flush()
                os.fsync(handle.fileno())

    def prepare_resume(self, iteration: int) -> None:
        """Continue after a checkpoint at ``iteration``: drop torn lines, skip what sinks hold."""
        self.iteration = iteration
        rows = read_metrics_file(self.jsonl_path)
        if self.jsonl_path.exists():
            # Rewrite without a torn last line so that appends start on a fresh line.
            tmp = self.jsonl_path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
            os.replace(tmp, self.jsonl_path)
        self.skip_through["jsonl"] = max([int(r.get("counters/iter", 0)) for r in rows] + [0])

    def catch_up(self, name: str, held: int) -> None:
        """Bring sink ``name``, which holds iterations up to ``held``, level with ``metrics.jsonl``.

        Call after :meth:`prepare_resume`. Rows past ``held`` are replayed from the
        file (same numbers, same steps); iterations up to the file's last one are
        not sent to the sink again when training re-runs them.
        """
        logger = self.named_loggers[name]
        through = self.skip_through.get("jsonl", 0)
        for row in read_metrics_file(self.jsonl_path):
            row_iteration = int(row.get("counters/iter", 0))
            if held < row_iteration <= through:
                step = int(row.get("counters/total_frames", 0))
                for key, value in row.items():
                    logger.log_scalar(key, value, step=step)
                _commit_row(logger)
        self.skip_through[name] = max(held, through)

    # State (a trainer module, so that checkpoints hold the iteration) --------
    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.iteration = int(state_dict["iteration"])

    def register(self, trainer: Any, name: str = "metrics_router") -> None:
        """Become ``trainer.logger`` (and a checkpointed module); start each iteration before any other op."""
        trainer.logger = self
        trainer.register_module(name, self)
        trainer._batch_process_ops.insert(0, (self.begin_iteration, {}))


def _commit_row(logger: Logger) -> None:
    """End the pending row of a W&B logger (other loggers write rows as they go)."""
    from xdrl.trainer_hooks.wandb_hooks import commit_row, find_wandb_logger

    wandb_logger = find_wandb_logger(logger)
    if wandb_logger is not None:
        commit_row(wandb_logger)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
