import itertools

import numpy as np
import pytest

from xdrl.report.pareto import hypervolume, pareto_mask

# deep-sea-treasure-v0's true Pareto front (treasure, -time), as MO-Gymnasium defines the convex map.
DST_FRONT = np.array(
    [
        [0.7, -1],
        [8.2, -3],
        [11.5, -5],
        [14.0, -7],
        [15.1, -8],
        [16.1, -9],
        [19.6, -13],
        [20.3, -14],
        [22.4, -17],
        [23.7, -19],
    ]
)


def test_front_of_deep_sea_treasure_is_all_non_dominated():
    dominated = np.array([[0.7, -3.0], [8.2, -5.0], [5.0, -20.0]])
    mask = pareto_mask(np.vstack([DST_FRONT, dominated]), ["max", "max"])
    assert mask.tolist() == [True] * 10 + [False] * 3


def test_hypervolume_of_deep_sea_treasure_against_morl_baselines_reference():
    # By hand: sort by treasure; each point adds (treasure - previous treasure) * (time - reference time).
    expected, previous = 0.0, 0.0
    for treasure, time in DST_FRONT:
        expected += (treasure - previous) * (time - -25.0)
        previous = treasure
    assert hypervolume(DST_FRONT, [0.0, -25.0], ["max", "max"]) == pytest.approx(expected)
    assert expected == pytest.approx(401.8)


def test_hypervolume_of_deep_sea_treasure_rectangle_by_rectangle():
    # The same slabs written out: width along treasure x height above time -25.
    rectangles = [
        (0.7 - 0.0) * (-1 + 25),  # 16.8
        (8.2 - 0.7) * (-3 + 25),  # 165.0
        (11.5 - 8.2) * (-5 + 25),  # 66.0
        (14.0 - 11.5) * (-7 + 25),  # 45.0
        (15.1 - 14.0) * (-8 + 25),  # 18.7
        (16.1 - 15.1) * (-9 + 25),  # 16.0
        (19.6 - 16.1) * (-13 + 25),  # 42.0
        (20.3 - 19.6) * (-14 + 25),  # 7.7
        (22.4 - 20.3) * (-17 + 25),  # 16.8
        (23.7 - 22.4) * (-19 + 25),  # 7.8
    ]
    assert sum(rectangles) == pytest.approx(401.8)
    # Order and dominated points change nothing.
    shuffled = np.vstack([DST_FRONT[::-1], [[5.0, -20.0], [0.7, -3.0]]])
    assert hypervolume(shuffled, [0.0, -25.0], ["max", "max"]) == pytest.approx(401.8)
    # Minimising the time instead of maximising its negative is the same front.
    as_time = DST_FRONT * [1.0, -1.0]
    assert hypervolume(as_time, [0.0, 25.0], ["max", "min"]) == pytest.approx(401.8)


@pytest.mark.parametrize(
    ("points", "reference", "expected"),
    [
        ([[3.0, 2.0]], [0.0, 0.0], 6.0),  # one box 3 x 2
        ([[3.0, 1.0], [1.0, 3.0]], [0.0, 0.0], 3.0 + 3.0 - 1.0),  # two boxes overlapping in 1 x 1
        ([[3.0, 1.0], [2.0, 2.0], [1.0, 3.0]], [0.0, 0.0], 3 * 1 + 2 * 1 + 1 * 1),  # a staircase, step by step
        ([[3.0, 1.0], [2.0, 0.5]], [0.0, 0.0], 3.0),  # the second point is dominated
        ([[3.0, 1.0], [3.0, 1.0]], [0.0, 0.0], 3.0),  # a duplicate counts once
        ([[3.0, 2.0], [5.0, -1.0]], [1.0, 0.0], 4.0),  # a point below the reference adds nothing
        ([[4.0, 4.0]], [4.0, 0.0], 0.0),  # on the reference's edge: no volume
    ],
)
def test_two_objective_hypervolumes_by_hand(points, reference, expected):
    assert hypervolume(np.array(points), reference, ["max", "max"]) == pytest.approx(expected)


def inclusion_exclusion(points, reference):
    """Union of the boxes [reference, point] (maximisation), by inclusion-exclusion over every subset."""
    total = 0.0
    for size in range(1, len(points) + 1):
        for subset in itertools.combinations(points, size):
            corner = np.min(subset, axis=0)  # the intersection of boxes is the box of the lowest corner
            total += (-1) ** (size + 1) * np.prod(np.clip(corner - reference, 0.0, None))
    return total


@pytest.mark.parametrize("dimensions", [2, 3, 4])
def test_hypervolume_agrees_with_inclusion_exclusion(dimensions):
    rng = np.random.default_rng(dimensions)
    for _ in range(20):
        points = rng.uniform(-1.0, 5.0, size=(rng.integers(1, 8), dimensions))
        reference = np.zeros(dimensions)
        assert hypervolume(points, reference, ["max"] * dimensions) == pytest.approx(
            inclusion_exclusion(points, reference)
        )


def test_minimisation_and_three_objectives():
    # Minimise both: points (1,2) and (2,1) against (3,3): union of 2x1 and 1x2 boxes overlapping in 1x1 -> 3.
    assert hypervolume(np.array([[1.0, 2.0], [2.0, 1.0]]), [3.0, 3.0], ["min", "min"]) == pytest.approx(3.0)
    cube = hypervolume(np.array([[1.0, 1.0, 1.0], [2.0, 0.5, 0.5]]), [0.0, 0.0, 0.0], ["max"] * 3)
    assert cube == pytest.approx(1.0 + 1.0 * 0.5 * 0.5)  # unit cube plus the slab beyond x=1
    assert hypervolume(np.array([[-1.0, -1.0]]), [0.0, 0.0], ["max", "max"]) == 0.0  # behind the reference
