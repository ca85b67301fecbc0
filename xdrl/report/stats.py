"""Seed-robust comparison: interquartile mean, stratified bootstrap intervals, probability of improvement.

A small numpy implementation of the methods of Agarwal et al. (2021), "Deep RL at
the Edge of the Statistical Precipice" (the ``rliable`` library; its bootstrap
dependency ``arch`` does not import with the pandas of this stack). Scores are
arrays of shape ``(runs, tasks)``; "stratified" means runs are resampled with
replacement within each task.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats as scipy_stats


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of all run x task scores (25% trimmed each side).

    Examples:
        >>> iqm(np.array([[1.0], [2.0], [3.0], [4.0]]))
        2.5
    """
    return float(scipy_stats.trim_mean(np.asarray(scores, dtype=float).reshape(-1), proportiontocut=0.25))


def _stratified_resample(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    runs, tasks = scores.shape
    indices = rng.integers(0, runs, size=(runs, tasks))
    return np.take_along_axis(scores, indices, axis=0)


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap confidence interval."""

    estimate: float
    low: float
    high: float


def bootstrap_iqm(scores: np.ndarray, *, reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> Interval:
    """IQM of ``scores`` ``(runs, tasks)`` with a stratified percentile bootstrap interval."""
    scores = np.asarray(scores, dtype=float)
    scores = scores.reshape(-1, 1) if scores.ndim == 1 else scores
    rng = np.random.default_rng(seed)
    samples = np.array([iqm(_stratified_resample(scores, rng)) for _ in range(reps)])
    tail = 100 * (1 - confidence) / 2
    return Interval(iqm(scores), float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail)))


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y): chance that a run of X beats a run of Y on a task, ties counting half, averaged over tasks.

    Examples:
        >>> probability_of_improvement(np.array([[2.0], [3.0]]), np.array([[1.0], [3.0]]))
        0.625
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    x = x.reshape(-1, 1) if x.ndim == 1 else x
    y = y.reshape(-1, 1) if y.ndim == 1 else y
    per_task = []
    for task in range(x.shape[1]):
        wins = (x[:, task, None] > y[None, :, task]).mean()
        ties = (x[:, task, None] == y[None, :, task]).mean()
        per_task.append(wins + 0.5 * ties)
    return float(np.mean(per_task))


def bootstrap_probability_of_improvement(
    x: np.ndarray, y: np.ndarray, *, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """P(X > Y) with a stratified bootstrap interval (X and Y resampled independently)."""
    x = np.asarray(x, dtype=float).reshape(len(x), -1)
    y = np.asarray(y, dtype=float).reshape(len(y), -1)
    rng = np.random.default_rng(seed)
    samples = np.array(
        [probability_of_improvement(_stratified_resample(x, rng), _stratified_resample(y, rng)) for _ in range(reps)]
    )
    tail = 100 * (1 - confidence) / 2
    return Interval(
        probability_of_improvement(x, y), float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))
    )
