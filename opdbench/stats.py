"""Statistics over cells (METHODS.md §8): small functions of arrays, in the spirit of rliable.

Shapes follow rliable's `score_dict` convention: a method's scores on a set of tasks are an array
`runs x tasks` (one run = one seed), and a dict maps each method to its array. Within one cell the
unit is the eval prompt: `scores_S_P` holds seeds x prompts (each prompt's mean@k or best@k).

Every random draw takes an explicit `numpy.random.Generator`, so an interval is reproducible.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

LEVEL = 0.95  # coverage of every interval
REPS = 2000  # bootstrap resamples


def iqm(scores) -> float:
    """Interquartile mean: the mean of the middle 50 % of all values (rliable's aggregate; robust
    to a task or a seed that is an outlier, more efficient than the median)."""
    from scipy import stats as sps  # here, not at the top: a training cell uses this module without scipy
    return float(sps.trim_mean(np.asarray(scores, dtype=float).ravel(), proportiontocut=0.25))


def probability_of_improvement(x_R_M, y_R_M) -> float:
    """P(X > Y): the chance that a run of X beats a run of Y on a task, averaged over the tasks.

    Per task, the Mann-Whitney U statistic over all run pairs divided by their number (a tie counts
    one half), so P(X > Y) + P(Y > X) = 1 and identical inputs give 0.5."""
    from scipy import stats as sps
    x_R_M, y_R_M = np.atleast_2d(x_R_M).astype(float), np.atleast_2d(y_R_M).astype(float)
    if x_R_M.shape[1] != y_R_M.shape[1]:
        raise ValueError(f"tasks differ: {x_R_M.shape[1]} against {y_R_M.shape[1]}")
    per_task = [sps.mannwhitneyu(x, y).statistic / (len(x) * len(y)) for x, y in zip(x_R_M.T, y_R_M.T)]
    return float(np.mean(per_task))


def _interval(point: float, resampled: np.ndarray, level: float) -> tuple[float, float, float]:
    tail = (1 - level) / 2
    lo, hi = np.quantile(resampled, [tail, 1 - tail])
    # A percentile interval need not contain the point for a skewed statistic of very few runs;
    # clip so that a table never shows lo > point (the width is what the reader uses).
    return float(point), float(min(lo, point)), float(max(hi, point))


def cell_ci(scores_S_P, rng: np.random.Generator, reps: int = REPS,
            level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, lo, hi) of one method on one task: the mean over seeds of the mean over prompts, with
    a percentile bootstrap that resamples seeds and, within each resampled seed, prompts. Both are
    sources of noise: a new seed is a new training run, new prompts a new eval set."""
    scores_S_P = np.asarray(scores_S_P, dtype=float)
    if scores_S_P.ndim != 2 or 0 in scores_S_P.shape:
        raise ValueError(f"cell_ci needs seeds x prompts scores, got shape {scores_S_P.shape}")
    seeds, prompts = scores_S_P.shape
    seed_B_S = rng.integers(seeds, size=(reps, seeds))
    prompt_B_S_P = rng.integers(prompts, size=(reps, seeds, prompts))
    resampled_B = scores_S_P[seed_B_S[..., None], prompt_B_S_P].mean(axis=(1, 2))
    return _interval(scores_S_P.mean(), resampled_B, level)


def stratified_ci(statistic: Callable[..., float], *arrays_R_M, rng: np.random.Generator,
                  reps: int = REPS, level: float = LEVEL) -> tuple[float, float, float]:
    """(point, lo, hi) of `statistic(*arrays)` over runs x tasks arrays (e.g. `iqm` of one method,
    `probability_of_improvement` of two), resampling each array's runs within each task
    independently: rliable's stratified bootstrap."""
    arrays_R_M = [np.atleast_2d(np.asarray(a, dtype=float)) for a in arrays_R_M]
    point = statistic(*arrays_R_M)
    resampled = np.empty(reps)
    for b in range(reps):
        draws = []
        for a in arrays_R_M:
            runs = rng.integers(a.shape[0], size=a.shape)  # a run index per (run, task) slot
            draws.append(np.take_along_axis(a, runs, axis=0))
        resampled[b] = statistic(*draws)
    return _interval(point, resampled, level)


def area_under_curve(steps, values) -> float:
    """Mean of an eval curve over training (trapezoids over steps, divided by the last step):
    sample efficiency, which rewards learning early. A single point is its own value."""
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    if len(steps) < 2 or steps[-1] == steps[0]:
        return float(values[-1])
    return float(np.trapezoid(values, steps) / (steps[-1] - steps[0]))
