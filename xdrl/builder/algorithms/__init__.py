"""The builders of the algorithms: one build function per entry of :data:`xdrl.config.algorithms.ALGORITHMS`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xdrl.builder.algorithms import dqn, ppo, sac
from xdrl.builder.algorithms.common import AlgorithmParts, BuildContext

#: ``algo.name`` -> the function that builds the algorithm from its typed config.
BUILDERS: dict[str, Callable[[Any, BuildContext], AlgorithmParts]] = {
    "ppo": ppo.build,
    "dqn": dqn.build,
    "sac": sac.build,
}

__all__ = ["BUILDERS", "AlgorithmParts", "BuildContext"]
