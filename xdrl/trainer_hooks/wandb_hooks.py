"""Weights & Biases hooks: one history row per iteration, a finished run at shutdown.

``wandb`` is imported lazily, inside the calls that need it: this module imports
without W&B installed and costs nothing when W&B is off.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from tensordict import TensorDictBase
from torchrl.record.loggers.wandb import WandbLogger
from torchrl.trainers.trainers import Trainer, TrainerHookBase

from xdrl._compat import wandb_step_registry
from xdrl.trainer_hooks.shutdown import ensure_shutdown_on_error, train_error

_log = logging.getLogger(__name__)

# Logger methods that end in ``wandb.Run.log`` and accept ``commit``.
_DEFERRED_METHODS = ("log_scalar", "log_video", "log_histogram")
_DEFERRED_MARK = "_xdrl_deferred_commit"
#: Set on the logger by a deferred call, cleared by whoever commits the row.
PENDING_MARK = "_xdrl_row_pending"


def find_wandb_logger(logger: Any) -> WandbLogger | None:
    """The TorchRL ``WandbLogger`` behind ``logger``: itself, or one of its ``loggers``."""
    if isinstance(logger, WandbLogger):
        return logger
    for child in getattr(logger, "loggers", ()) or ():
        found = find_wandb_logger(child)
        if found is not None:
            return found
    return None


def commit_row(logger: WandbLogger) -> None:
    """Commit the logger's pending W&B row now."""
    logger.experiment.log({}, commit=True)
    setattr(logger, PENDING_MARK, False)


def defer_commits(logger: WandbLogger) -> None:
    """Make the logger's calls add to the pending W&B row (``commit=False``) by default.

    TorchRL's trainer calls ``log_scalar(name, value, step=...)`` once per metric;
    with W&B's default ``commit=True`` each call would become its own history
    row. A caller can still pass ``commit=True`` explicitly.
    """
    if getattr(logger, _DEFERRED_MARK, False):
        return
    for method_name in _DEFERRED_METHODS:
        method = getattr(logger, method_name)

        @functools.wraps(method)
        def deferred(*args: Any, _method: Any = method, commit: bool = False, **kwargs: Any) -> Any:
            result = _method(*args, commit=commit, **kwargs)
            setattr(logger, PENDING_MARK, not commit)
            return result

        setattr(logger, method_name, deferred)
    setattr(logger, _DEFERRED_MARK, True)
    # Nothing pending yet. Without the mark, the flush hook would compare step registries, and a
    # hook restored from a checkpoint (its registry from another process) would commit an empty row.
    setattr(logger, PENDING_MARK, False)


class WandbFlushHook(TrainerHookBase):
    """Flush pending W&B scalar rows emitted through TorchRL's scalar logger.

    TorchRL logs scalar metrics one by one. On registration this hook makes the
    trainer's ``WandbLogger`` add them to the pending row (``commit=False``), and
    commits the pending row after each trainer iteration and before W&B is
    finished: each iteration is exactly one W&B history row, visible while the
    job runs, and nothing pending is lost at shutdown.

    Stages: ``post_steps_log`` (register it after the hooks whose metrics belong
    to the row) and ``shutdown`` (register it before :class:`WandbFinishHook`).
    Does nothing when the trainer's logger holds no ``WandbLogger`` or when
    ``enabled`` is ``False``.

    Args:
        enabled: whether the hook does anything.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.trainer: Trainer | None = None
        self._last_flushed_steps: tuple[tuple[str, int], ...] = ()

    @staticmethod
    def _wandb_step_registry(logger: Any) -> tuple[tuple[str, int], ...]:
        """The logger's per-namespace step counters, as a comparable tuple."""
        return wandb_step_registry(logger)

    def _logger(self) -> WandbLogger | None:
        if not self.enabled or self.trainer is None:
            return None
        return find_wandb_logger(self.trainer.logger)

    def flush(self) -> bool:
        """Commit the pending row if anything was logged since the last flush.

        Returns:
            Whether a row was committed.
        """
        logger = self._logger()
        if logger is None:
            return False
        registry = self._wandb_step_registry(logger)
        # A deferred call marks the row pending; without the mark, a changed step
        # registry tells that something was logged since the last flush.
        pending = getattr(logger, PENDING_MARK, None)
        if not (pending if pending is not None else registry != self._last_flushed_steps):
            return False
        commit_row(logger)
        self._last_flushed_steps = registry
        return True

    def __call__(self, _batch: TensorDictBase | None = None) -> None:
        self.flush()

    def state_dict(self) -> dict[str, Any]:
        return {"last_flushed_steps": [list(item) for item in self._last_flushed_steps]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_flushed_steps = tuple((str(k), int(v)) for k, v in state_dict["last_flushed_steps"])

    def register(self, trainer: Trainer, name: str = "wandb_flush") -> None:
        """Register at this hook's stages (see the class docstring) as trainer module ``name``."""
        self.trainer = trainer
        logger = self._logger()
        if logger is not None:
            defer_commits(logger)
        ensure_shutdown_on_error(trainer)
        trainer.register_module(name, self)
        trainer.register_op("post_steps_log", self)
        trainer.register_op("shutdown", self.flush)


class WandbFinishHook(TrainerHookBase):
    """Optional shutdown hook for config-driven Weights & Biases cleanup.

    The hook intentionally swallows import/runtime errors so offline or disabled
    W&B runs do not fail trainer shutdown: they are logged as warnings.

    Stage: ``shutdown``. Finishes the trainer logger's W&B run (or the active
    ``wandb.run``), also when training ends with an exception: registration
    makes ``trainer.train()`` run the shutdown stage before the exception
    propagates. The exit code is 0 after a normal end or a ``SystemExit(0)`` (how
    Ray Tune stops a trial), 1 after any other exception.

    Args:
        enabled: ``False`` makes the hook do nothing.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.trainer: Trainer | None = None

    def finish(self) -> None:
        """Finish the W&B run; never raises."""
        if not self.enabled:
            return
        try:
            logger = find_wandb_logger(self.trainer.logger) if self.trainer is not None else None
            if logger is not None:
                run = logger.experiment
            else:
                import wandb

                run = wandb.run
            if run is None:
                return
            run.finish(exit_code=_exit_code(train_error(self.trainer)))
        except Exception as error:  # noqa: BLE001 - shutdown must go on
            _log.warning("WandbFinishHook: finishing the W&B run failed: %r", error)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        del state_dict

    def register(self, trainer: Trainer, name: str = "wandb_finish") -> None:
        """Register at this hook's stages (see the class docstring) as trainer module ``name``."""
        self.trainer = trainer
        ensure_shutdown_on_error(trainer)
        trainer.register_module(name, self)
        trainer.register_op("shutdown", self.finish)


def _exit_code(error: BaseException | None) -> int:
    if error is None:
        return 0
    if isinstance(error, SystemExit) and error.code in (0, None):
        return 0
    return 1
