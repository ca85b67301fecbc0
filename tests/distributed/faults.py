"""Faults injected into trial worker processes through Ray's ``worker_process_setup_hook``."""

from __future__ import annotations

import os

#: With this set to N in a worker's environment, the N-th optimisation phase of a trainer there raises.
FAIL_AT_VAR = "XDRL_TEST_FAIL_AT_OPTIM"
MESSAGE = "injected failure in the optimisation step"


def fail_optimisation() -> None:
    """Make ``Trainer.optim_steps`` raise ``RuntimeError`` on its N-th call in this process."""
    fail_at = int(os.environ.get(FAIL_AT_VAR, "0"))
    if fail_at <= 0:
        return
    from torchrl.trainers.trainers import Trainer

    optim_steps = Trainer.optim_steps
    calls = [0]

    def failing(self, batch):  # noqa: ANN001
        calls[0] += 1
        if calls[0] == fail_at:
            raise RuntimeError(MESSAGE)
        return optim_steps(self, batch)

    Trainer.optim_steps = failing
