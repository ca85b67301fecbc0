"""Pareto fronts and hypervolumes of multi-objective search results.

The fronts are a search's trials (tens, a few hundred at most) in two or three
objectives: exact slicing is instant at that size, so no hypervolume package
(moocore, pymoo) is needed. ``tests/report/test_pareto.py`` checks it against
hand-computed volumes and against inclusion-exclusion.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _to_maximization(points: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    signs = np.array([1.0 if mode == "max" else -1.0 for mode in modes])
    return np.asarray(points, dtype=float) * signs


def pareto_mask(points: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Which points no other point dominates (at least as good everywhere, better somewhere).

    Examples:
        >>> pareto_mask(np.array([[1.0, 5.0], [2.0, 4.0], [1.0, 4.0]]), ["max", "max"]).tolist()
        [True, True, False]
    """
    values = _to_maximization(points, modes)
    mask = np.ones(len(values), dtype=bool)
    for i, point in enumerate(values):
        dominated = np.all(values >= point, axis=1) & np.any(values > point, axis=1)
        mask[i] = not dominated.any()
    return mask


def hypervolume(points: np.ndarray, reference: Sequence[float], modes: Sequence[str]) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` (exact, by slicing; fine for small fronts).

    Examples:
        >>> hypervolume(np.array([[2.0, 1.0], [1.0, 2.0]]), [0.0, 0.0], ["max", "max"])
        3.0
    """
    values = _to_maximization(points, modes)
    ref = _to_maximization(np.asarray([reference], dtype=float), modes)[0]
    values = values[np.all(values > ref, axis=1)]
    return float(_volume(values - ref)) if len(values) else 0.0


def _volume(points: np.ndarray) -> float:
    """Hypervolume of maximization points against the origin (all coordinates positive)."""
    if points.shape[1] == 1:
        return float(points.max())
    order = np.argsort(-points[:, -1])
    points = points[order]
    total = 0.0
    for index in range(len(points)):
        height = points[index, -1] - (points[index + 1, -1] if index + 1 < len(points) else 0.0)
        if height > 0:
            total += height * _volume(points[: index + 1, :-1])
    return total
