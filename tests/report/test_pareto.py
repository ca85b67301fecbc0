import numpy as np
import pytest

from xdrl.report.pareto import hypervolume, pareto_mask

# deep-sea-treasure-v0's true Pareto front (treasure, -time), ../shared/REFERENCES.md.
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


def test_minimisation_and_three_objectives():
    # Minimise both: points (1,2) and (2,1) against (3,3): union of 2x1 and 1x2 boxes overlapping in 1x1 -> 3.
    assert hypervolume(np.array([[1.0, 2.0], [2.0, 1.0]]), [3.0, 3.0], ["min", "min"]) == pytest.approx(3.0)
    cube = hypervolume(np.array([[1.0, 1.0, 1.0], [2.0, 0.5, 0.5]]), [0.0, 0.0, 0.0], ["max"] * 3)
    assert cube == pytest.approx(1.0 + 1.0 * 0.5 * 0.5)  # unit cube plus the slab beyond x=1
    assert hypervolume(np.array([[-1.0, -1.0]]), [0.0, 0.0], ["max", "max"]) == 0.0  # behind the reference
