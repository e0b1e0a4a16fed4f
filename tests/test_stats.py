"""Statistics (METHODS.md §8): hand-computed cases, reproducible intervals, lo <= point <= hi."""

import itertools

import numpy as np
import pytest

from opdbench import stats


def test_iqm_hand_computed():
    assert stats.iqm([1, 2, 3, 4]) == 2.5
    assert stats.iqm([[4, 1], [3, 2]]) == 2.5  # runs x tasks: over all of them
    assert stats.iqm([0, 1, 1, 1, 1, 1, 1, 100]) == 1.0  # the outliers are trimmed


def test_probability_of_improvement_hand_computed():
    assert stats.probability_of_improvement([[3], [4]], [[1], [2]]) == 1.0
    assert stats.probability_of_improvement([[1], [2]], [[0], [3]]) == 0.5  # 2 of 4 pairs
    assert stats.probability_of_improvement([[1]], [[1]]) == 0.5  # a tie counts one half
    # Two tasks: 1.0 on the first; 0.125 on the second (x=[0, 1], y=[1, 2]: one tie in four pairs).
    assert stats.probability_of_improvement([[5, 0], [6, 1]], [[1, 1], [2, 2]]) == pytest.approx(0.5625)


def test_probability_of_improvement_is_complementary_and_half_on_identical():
    rng = np.random.default_rng(0)
    x, y = rng.random((5, 3)).round(1), rng.random((4, 3)).round(1)  # rounding makes ties
    assert stats.probability_of_improvement(x, y) + stats.probability_of_improvement(y, x) == pytest.approx(1)
    assert stats.probability_of_improvement(x, x) == 0.5


def test_cell_ci_matches_the_exact_bootstrap_distribution():
    """Two seeds x two prompts: enumerate every (seed, prompt) resample, compare quantiles."""
    scores = np.array([[0.0, 1.0], [0.5, 0.5]])
    exact = []
    for seeds in itertools.product(range(2), repeat=2):
        for prompts in itertools.product(range(2), repeat=4):
            exact.append(np.mean([scores[s, p] for s, p in zip(np.repeat(seeds, 2), prompts)]))
    lo, hi = np.quantile(exact, [0.025, 0.975])
    point, ci_lo, ci_hi = stats.cell_ci(scores, np.random.default_rng(0), reps=40000)
    assert point == 0.5
    assert ci_lo == pytest.approx(lo, abs=0.01) and ci_hi == pytest.approx(hi, abs=0.01)


def test_cell_ci_reproducible_and_ordered():
    scores = np.random.default_rng(1).random((3, 50))
    a = stats.cell_ci(scores, np.random.default_rng(7))
    assert a == stats.cell_ci(scores, np.random.default_rng(7))
    assert a != stats.cell_ci(scores, np.random.default_rng(8))
    point, lo, hi = a
    assert lo <= point <= hi and lo < hi
    assert stats.cell_ci(np.full((3, 4), 0.25), np.random.default_rng(0)) == (0.25, 0.25, 0.25)


def test_cell_ci_widens_with_fewer_seeds_of_spread_runs():
    rng = np.random.default_rng(2)
    runs = np.array([0.2, 0.5, 0.8])[:, None] + 0.01 * rng.random((3, 100))
    _, lo, hi = stats.cell_ci(runs, np.random.default_rng(0))
    _, lo1, hi1 = stats.cell_ci(runs[:1], np.random.default_rng(0))
    assert hi - lo > 10 * (hi1 - lo1)  # the seeds' spread dominates the prompts'


def test_cell_ci_rejects_a_flat_array():
    with pytest.raises(ValueError, match="seeds x prompts"):
        stats.cell_ci([0.1, 0.2], np.random.default_rng(0))


def test_stratified_ci_reproducible_and_ordered():
    rng = np.random.default_rng(3)
    x, y = rng.random((3, 3)), rng.random((3, 3)) - 0.2
    for statistic, arrays in ((stats.iqm, (x,)), (stats.probability_of_improvement, (x, y))):
        a = stats.stratified_ci(statistic, *arrays, rng=np.random.default_rng(5), reps=300)
        assert a == stats.stratified_ci(statistic, *arrays, rng=np.random.default_rng(5), reps=300)
        point, lo, hi = a
        assert point == statistic(*arrays) and lo <= point <= hi


def test_statistics_take_a_batch_axis_equal_to_one_call_each():
    rng = np.random.default_rng(4)
    x_B_R_M, y_B_R_M = rng.random((5, 3, 2)), rng.random((5, 4, 2))
    assert np.allclose(stats.iqm(x_B_R_M), [stats.iqm(x) for x in x_B_R_M])
    assert np.allclose(stats.probability_of_improvement(x_B_R_M, y_B_R_M),
                       [stats.probability_of_improvement(x, y) for x, y in zip(x_B_R_M, y_B_R_M)])


def test_area_under_curve():
    assert stats.area_under_curve([0, 10, 20], [0.0, 1.0, 1.0]) == 0.75
    assert stats.area_under_curve([0, 25, 75], [0.2, 0.2, 0.2]) == pytest.approx(0.2)
    assert stats.area_under_curve([0], [0.3]) == 0.3
