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


def iqm(scores_R_M) -> float | np.ndarray:
    """Interquartile mean of runs x tasks scores: the mean of the middle 50 % of all of them
    (rliable's aggregate; robust to a task or a seed that is an outlier, more efficient than the
    median). Leading axes are a batch: (B, R, M) gives B values."""
    from scipy import stats as sps  # here, not at the top: a training cell uses this module without scipy
    a = np.atleast_2d(np.asarray(scores_R_M, dtype=float))
    return sps.trim_mean(a.reshape(*a.shape[:-2], -1), proportiontocut=0.25, axis=-1)


def probability_of_improvement(x_R_M, y_R_M) -> float | np.ndarray:
    """P(X > Y): the chance that a run of X beats a run of Y on a task, averaged over the tasks.

    Per task, the Mann-Whitney U statistic over all run pairs divided by their number (a tie counts
    one half), so P(X > Y) + P(Y > X) = 1 and identical inputs give 0.5. Leading axes are a batch."""
    from scipy import stats as sps
    x_R_M, y_R_M = np.atleast_2d(x_R_M).astype(float), np.atleast_2d(y_R_M).astype(float)
    if x_R_M.shape[-1] != y_R_M.shape[-1]:
        raise ValueError(f"tasks differ: {x_R_M.shape[-1]} against {y_R_M.shape[-1]}")
    u_M = sps.mannwhitneyu(x_R_M, y_R_M, axis=-2).statistic
    return (u_M / (x_R_M.shape[-2] * y_R_M.shape[-2])).mean(axis=-1)


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


def stratified_ci(statistic: Callable[..., np.ndarray], *arrays_R_M, rng: np.random.Generator,
                  reps: int = REPS, level: float = LEVEL) -> tuple[float, float, float]:
    """(point, lo, hi) of `statistic(*arrays)` over runs x tasks arrays (e.g. `iqm` of one method,
    `probability_of_improvement` of two), resampling each array's runs within each task
    independently: rliable's stratified bootstrap. `statistic` takes a leading batch axis, so all
    `reps` resamples are scored in one vectorized call (a loop of scipy calls took seconds)."""
    arrays_R_M = [np.atleast_2d(np.asarray(a, dtype=float)) for a in arrays_R_M]
    point = float(statistic(*arrays_R_M))
    draws_B_R_M = [np.take_along_axis(a[None], rng.integers(a.shape[0], size=(reps, *a.shape)), axis=1)
                   for a in arrays_R_M]  # a run index per (resample, run, task) slot
    return _interval(point, np.asarray(statistic(*draws_B_R_M)), level)


def area_under_curve(steps, values) -> float:
    """Mean of an eval curve over training (trapezoids over steps, divided by the last step):
    sample efficiency, which rewards learning early. A single point is its own value."""
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    if len(steps) < 2 or steps[-1] == steps[0]:
        return float(values[-1])
    return float(np.trapezoid(values, steps) / (steps[-1] - steps[0]))
