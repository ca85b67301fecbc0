"""IQM, stratified bootstrap intervals and probability of improvement against hand computations."""

import numpy as np
import pytest

from xdrl.report import stats


def test_iqm_trims_a_quarter_each_side():
    # 8 scores: drop the 2 lowest and the 2 highest, average the middle 4.
    scores = np.array([[0.0], [100.0], [3.0], [5.0], [7.0], [9.0], [-50.0], [1000.0]])
    assert stats.iqm(scores) == pytest.approx((3 + 5 + 7 + 9) / 4)
    # Across tasks the runs x tasks scores are pooled.
    assert stats.iqm(np.array([[1.0, 2.0], [3.0, 4.0]])) == pytest.approx(2.5)


def test_bootstrap_of_identical_scores_is_a_point():
    interval = stats.bootstrap_iqm(np.full((5, 1), 500.0), reps=200)
    assert (interval.estimate, interval.low, interval.high) == (500.0, 500.0, 500.0)


def test_bootstrap_interval_matches_a_hand_written_resampling():
    scores = np.array([[10.0], [20.0], [30.0], [40.0], [55.0]])
    interval = stats.bootstrap_iqm(scores, reps=500, seed=7)
    # The same resampling written out by hand: runs drawn with replacement within the task.
    rng = np.random.default_rng(7)
    draws = []
    for _ in range(500):
        sample = scores[rng.integers(0, 5, size=(5, 1)), 0]
        ordered = np.sort(sample.reshape(-1))
        draws.append(ordered[1:4].mean())  # 25% of 5 values: one cut from each side
    assert interval.estimate == pytest.approx(30.0)  # trim_mean(5 values, 0.25) drops one value each side
    assert interval.low == pytest.approx(np.percentile(draws, 2.5))
    assert interval.high == pytest.approx(np.percentile(draws, 97.5))
    assert interval.low <= interval.estimate <= interval.high


def test_probability_of_improvement_counts_wins_and_half_ties():
    x = np.array([1.0, 2.0, 3.0])
    y = np.array([2.0, 2.0])
    # pairs: (1,2)(1,2) lose, (2,2)(2,2) ties, (3,2)(3,2) win -> (2 + 0.5 * 2) / 6
    assert stats.probability_of_improvement(x, y) == pytest.approx(0.5)
    assert stats.probability_of_improvement(np.array([5.0, 6.0]), np.array([1.0, 2.0])) == 1.0
    interval = stats.bootstrap_probability_of_improvement(
        np.array([5.0, 6.0, 7.0]), np.array([1.0, 2.0, 3.0]), reps=200
    )
    assert (interval.estimate, interval.low, interval.high) == (1.0, 1.0, 1.0)
    two_tasks = stats.probability_of_improvement(np.array([[1.0, 5.0]]), np.array([[2.0, 4.0]]))
    assert two_tasks == pytest.approx(0.5)  # loses task 1, wins task 2


def test_runs_are_resampled_within_each_task():
    # Task 1's runs all score 0, task 2's all 10. Resampled within each task, every resample still
    # holds two 0s and two 10s: the IQM never moves. Pooled resampling (not stratified) would draw
    # resamples of four 0s or four 10s and give a wide interval.
    scores = np.array([[0.0, 10.0], [0.0, 10.0]])
    interval = stats.bootstrap_iqm(scores, reps=300)
    assert (interval.estimate, interval.low, interval.high) == (5.0, 5.0, 5.0)
    varied = stats.bootstrap_iqm(np.array([[0.0, 10.0], [1.0, 12.0], [2.0, 11.0]]), reps=300)
    assert varied.low < varied.estimate < varied.high


def test_a_single_run_is_held_fixed():
    # scipy rejects samples of one observation; resampling one value only ever gives it back.
    single = stats.bootstrap_iqm(np.array([[7.0]]))
    assert (single.estimate, single.low, single.high) == (7.0, 7.0, 7.0)
    interval = stats.bootstrap_probability_of_improvement(np.array([2.0]), np.array([1.0, 2.0, 3.0]), reps=400)
    assert interval.estimate == pytest.approx((1 + 0.5 + 0) / 3)
    # Y's resamples hold three of {1, 2, 3}: P ranges over multiples of 1/6 from 0 to 1.
    assert 0.0 <= interval.low <= interval.estimate <= interval.high <= 1.0
    assert interval.low < interval.high
