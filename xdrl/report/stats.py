"""Seed-robust comparison: interquartile mean, stratified bootstrap intervals, probability of improvement.

The methods of Agarwal et al. (2021), "Deep RL at the Edge of the Statistical
Precipice" (the ``rliable`` library; its bootstrap dependency ``arch`` does not
import with the pandas of this stack). Scores are arrays of shape ``(runs, tasks)``;
"stratified" means runs are resampled with replacement within each task.

The resampling is ``scipy.stats.bootstrap``'s: each task's runs are passed as a
sample of their own, and scipy resamples every sample independently, which is
exactly a bootstrap stratified by task. The percentile interval is rliable's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats as scipy_stats


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of all run x task scores (25% trimmed each side).

    Examples:
        >>> iqm(np.array([[1.0], [2.0], [3.0], [4.0]]))
        2.5
    """
    return float(scipy_stats.trim_mean(np.asarray(scores, dtype=float).reshape(-1), proportiontocut=0.25))


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap confidence interval."""

    estimate: float
    low: float
    high: float


def _as_runs_by_tasks(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    return scores.reshape(-1, 1) if scores.ndim == 1 else scores


def _columns(scores: np.ndarray) -> list[np.ndarray]:
    return [scores[:, task] for task in range(scores.shape[1])]


def _stratified_interval(
    strata: Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray],
    *,
    reps: int,
    confidence: float,
    seed: int,
) -> Interval:
    """``statistic`` of ``strata`` with a percentile interval, each stratum resampled within itself.

    ``statistic(*strata, axis=-1)`` must reduce the last axis and broadcast over the others
    (scipy's vectorised form). A stratum of one run is held fixed rather than passed to scipy,
    which rejects samples of one observation: resampling one value with replacement only ever
    gives that value back, so the bootstrap distribution is the same.
    """
    strata = [np.asarray(s, dtype=float) for s in strata]
    estimate = float(statistic(*strata, axis=-1))
    varying = [i for i, s in enumerate(strata) if len(s) > 1]
    if not varying:
        return Interval(estimate, estimate, estimate)

    def resampled_statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        batch = samples[0].shape[:-1]
        full = [np.broadcast_to(s, (*batch, len(s))) for s in strata]
        for index, sample in zip(varying, samples, strict=True):
            full[index] = sample
        return statistic(*full, axis=axis)

    result = scipy_stats.bootstrap(
        [strata[i] for i in varying],
        resampled_statistic,
        n_resamples=reps,
        vectorized=True,
        paired=False,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return Interval(estimate, float(interval.low), float(interval.high))


def _pooled_iqm(*tasks: np.ndarray, axis: int = -1) -> np.ndarray:
    return scipy_stats.trim_mean(np.concatenate(tasks, axis=axis), proportiontocut=0.25, axis=axis)


def bootstrap_iqm(scores: np.ndarray, *, reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> Interval:
    """IQM of ``scores`` ``(runs, tasks)`` with a stratified percentile bootstrap interval.

    Examples:
        >>> interval = bootstrap_iqm(np.array([[1.0], [2.0], [3.0], [4.0]]), reps=500)
        >>> interval.estimate, interval.low <= 2.5 <= interval.high
        (2.5, True)
    """
    scores = _as_runs_by_tasks(scores)
    return _stratified_interval(_columns(scores), _pooled_iqm, reps=reps, confidence=confidence, seed=seed)


def _probability_of_improvement(tasks: int) -> Callable[..., np.ndarray]:
    """P(X > Y) over ``tasks`` tasks, as a statistic of the ``2 * tasks`` columns (X's, then Y's)."""

    def statistic(*columns: np.ndarray, axis: int = -1) -> np.ndarray:
        if axis != -1:  # scipy moves the runs to the last axis before it calls a statistic
            raise ValueError(f"the runs must be on the last axis, not axis {axis}")
        per_task = []
        for x, y in zip(columns[:tasks], columns[tasks:], strict=True):
            x, y = x[..., :, None], y[..., None, :]  # every run of X against every run of Y
            per_task.append((x > y).mean(axis=(-2, -1)) + 0.5 * (x == y).mean(axis=(-2, -1)))
        return np.mean(per_task, axis=0)

    return statistic


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y): chance that a run of X beats a run of Y on a task, ties counting half, averaged over tasks.

    Examples:
        >>> probability_of_improvement(np.array([[2.0], [3.0]]), np.array([[1.0], [3.0]]))
        0.625
    """
    x, y = _as_runs_by_tasks(x), _as_runs_by_tasks(y)
    return float(_probability_of_improvement(x.shape[1])(*_columns(x), *_columns(y)))


def bootstrap_probability_of_improvement(
    x: np.ndarray, y: np.ndarray, *, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """P(X > Y) with a stratified bootstrap interval (X and Y resampled independently, each within each task).

    Examples:
        >>> bootstrap_probability_of_improvement(np.array([5.0, 6.0]), np.array([1.0, 2.0]), reps=100)
        Interval(estimate=1.0, low=1.0, high=1.0)
    """
    x, y = _as_runs_by_tasks(x), _as_runs_by_tasks(y)
    statistic = _probability_of_improvement(x.shape[1])
    return _stratified_interval([*_columns(x), *_columns(y)], statistic, reps=reps, confidence=confidence, seed=seed)
