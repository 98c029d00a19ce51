"""What a trial scores: each seed's score, aggregated over the trial's seeds.

A seed's score (``sweep.seed_score``) is read off its greedy evaluations: ``final`` (the
last one), ``last`` (the mean of the last ``sweep.score_last_n``) or ``mean`` (the mean of
all of them: the area under the evaluation curve). With ``sweep.metric=test/mean_reward``
it is the final test of the delivered agent instead. The trial's value aggregates the
seeds' scores (``sweep.aggregate``): ``mean``, ``iqm`` (interquartile mean) or ``min``.
No TensorFlow, no Optuna: plain numbers in, a number out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SEED_SCORES = ("final", "last", "mean")
AGGREGATES = ("mean", "iqm", "min")


def seed_score(evaluations: Sequence[float], how: str, last_n: int = 3) -> float:
    """One seed's score from its evaluation rewards, in order; NaN if there are none."""
    if not len(evaluations):
        return math.nan
    if how == "final":
        return float(evaluations[-1])
    if how == "last":
        return float(np.mean(evaluations[-last_n:]))
    if how == "mean":
        return float(np.mean(evaluations))
    raise ValueError(f"unknown seed score {how!r}")


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle half (rliable's IQM: 25% trimmed at
    each end, fractional observations weighted; for fewer than 4 values, the mean)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0:
        return math.nan
    if n < 4:
        return float(x.mean())
    # Weight each sorted value by its overlap with the middle half of [0, n).
    lo, hi = n / 4, 3 * n / 4
    edges = np.arange(n)
    weights = np.clip(np.minimum(edges + 1, hi) - np.maximum(edges, lo), 0, 1)
    return float((x * weights).sum() / weights.sum())


def aggregate(scores: Sequence[float], how: str) -> float:
    """The trial's value from its seeds' scores; NaN if any seed has none."""
    values = np.asarray(scores, dtype=float)
    if not len(values) or np.isnan(values).any():
        return math.nan
    if how == "mean":
        return float(values.mean())
    if how == "iqm":
        return iqm(values)
    if how == "min":
        return float(values.min())
    raise ValueError(f"unknown aggregate {how!r}")
