"""The objective and the statistics over seeds, on known inputs (no TensorFlow)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from sweep.engine import objective, seeds
from sweep.engine.stats import summarize, wilson


def test_seed_scores() -> None:
    evals = [100.0, 300.0, 500.0, 500.0, 200.0]
    assert objective.seed_score(evals, "final") == 200.0
    assert objective.seed_score(evals, "last", 3) == pytest.approx(400.0)
    assert objective.seed_score(evals, "mean") == pytest.approx(320.0)
    assert math.isnan(objective.seed_score([], "mean"))
    # A curve that reaches 500 and stays beats one that reaches it late or collapses.
    stable, late, collapsed = [500.0] * 5, [100.0] * 4 + [500.0], [500.0] * 4 + [88.0]
    assert objective.seed_score(late, "final") == objective.seed_score(stable, "final")
    assert objective.seed_score(stable, "mean") > objective.seed_score(late, "mean")
    assert objective.seed_score(stable, "last", 3) > objective.seed_score(collapsed, "last", 3)


def test_aggregates() -> None:
    assert objective.aggregate([1, 2, 3, 10], "mean") == 4.0
    assert objective.aggregate([1, 2, 3, 10], "min") == 1.0
    assert objective.aggregate([1, 2, 3, 10], "iqm") == 2.5  # the middle half: 2 and 3
    assert math.isnan(objective.aggregate([1.0, math.nan], "mean"))
    # IQM with n a multiple of 4 is the 25% trimmed mean; otherwise fractional weights.
    x = np.arange(12.0) ** 2
    assert objective.iqm(x) == pytest.approx(sps.trim_mean(x, 0.25))
    assert objective.iqm([1, 2, 3, 4, 100]) == pytest.approx((2 * 0.75 + 3 + 4 * 0.75) / 2.5)


def test_mean_interval_is_students_t() -> None:
    # The four seeds of the issue: a percentile bootstrap gave 179.8-276.7; t gives ~138-318.
    s = summarize([169.2, 275.4, 278.0, 190.4], 475)
    low, high = s.mean_ci
    assert s.mean == pytest.approx(228.25)
    half = 3.182446305284263 * np.std([169.2, 275.4, 278.0, 190.4], ddof=1) / 2
    assert (low, high) == pytest.approx((228.25 - half, 228.25 + half))
    assert low == pytest.approx(138.2, abs=0.1) and high == pytest.approx(318.3, abs=0.1)
    assert s.solved == 0
    assert summarize([500.0] * 5, 475).mean_ci == (500.0, 500.0)


def test_wilson_interval() -> None:
    assert wilson(9, 10) == pytest.approx((0.5958, 0.9821), abs=1e-4)
    assert wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson(0, 4) == pytest.approx((0.0, 0.4899), abs=1e-4)
    s = summarize([500, 480, 470, 500], 475)
    assert s.solved == 3 and s.solved_ci == wilson(3, 4)
    assert "solved 3/4" in s.line()


def test_iqm_interval_covers_the_iqm() -> None:
    rng = np.random.default_rng(0)
    values = list(rng.normal(300, 80, size=10))
    s = summarize(values, 475)
    low, high = s.iqm_ci()
    assert low < s.iqm < high
    assert high - low < 4 * 80  # an interval, not the whole range of rewards
    assert summarize([500.0] * 6, 475).iqm_ci() == (500.0, 500.0)


def test_seed_sets_never_overlap() -> None:
    trials = {s for n in range(200) for s in seeds.trial_seeds(0, n, 5)}
    trials |= {s for n in range(200) for s in seeds.trial_seeds(999, n, 5)}
    recheck = set(seeds.recheck_seeds(0, 20)) | set(seeds.recheck_seeds(999, 20))
    evaluate = set(seeds.evaluate_seeds(100))
    assert len(trials) == 2 * 200 * 5
    assert not trials & recheck and not trials & evaluate and not recheck & evaluate
    assert max(seeds.trial_seeds(999, 9999, 100)) < seeds.RECHECK_BASE
    assert max(seeds.evaluate_seeds(1000)) + 2_000_000 + 1000 < 2**32  # env offsets fit numpy
