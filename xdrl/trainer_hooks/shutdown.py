"""Run a trainer's ``shutdown`` stage also when training raises.

TorchRL 0.14.1's ``Trainer.train`` runs the ``shutdown`` hooks only after the
loop ends normally. A crash, ``KeyboardInterrupt`` or the ``SystemExit`` that Ray
Tune raises inside ``tune.report`` when it stops a trial would skip them, and
the W&B run would be left unfinished. :func:`ensure_shutdown_on_error` wraps the
trainer instance's ``train`` once so that the shutdown hooks run before the
exception propagates; if they already ran (a future TorchRL that calls them
in a ``finally``), they do not run twice.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from torchrl.trainers.trainers import Trainer

from xdrl._compat import register_op_first, stage_ops, wrap_train

_log = logging.getLogger(__name__)
_WRAPPED = "_xdrl_shutdown_guard"
_RAN = "_xdrl_shutdown_ran"
_ERROR = "_xdrl_train_error"


def _mark_shutdown_ran(trainer: Trainer) -> None:
    setattr(trainer, _RAN, True)


def train_error(trainer: Trainer | None) -> BaseException | None:
    """The exception that ended the last ``train()`` call, ``None`` after a normal end."""
    return getattr(trainer, _ERROR, None)


def run_shutdown_hooks(trainer: Trainer) -> None:
    """Run every ``shutdown`` op once, logging (not raising) their errors."""
    if getattr(trainer, _RAN, False):
        return
    setattr(trainer, _RAN, True)
    for op, kwargs in stage_ops(trainer, "shutdown"):
        try:
            op(**kwargs)
        except Exception:  # noqa: BLE001 - the original exception matters more
            _log.warning("shutdown hook %r failed while handling an error", op, exc_info=True)


def ensure_shutdown_on_error(trainer: Trainer) -> None:
    """Make ``trainer.train()`` run the shutdown stage when it raises (idempotent)."""
    if getattr(trainer, _WRAPPED, False):
        return
    setattr(trainer, _WRAPPED, True)
    # First op of the stage: once TorchRL itself reaches the shutdown stage, the
    # guard must not run it a second time, whatever a later op does.
    register_op_first(trainer, "shutdown", functools.partial(_mark_shutdown_ran, trainer))

    def guarded(original_train: Any) -> Any:
        def train(*args: Any, **kwargs: Any) -> Any:
            setattr(trainer, _RAN, False)
            setattr(trainer, _ERROR, None)
            try:
                return original_train(*args, **kwargs)
            except BaseException as error:
                setattr(trainer, _ERROR, error)
                run_shutdown_hooks(trainer)
                raise

        return train

    wrap_train(trainer, guarded)
