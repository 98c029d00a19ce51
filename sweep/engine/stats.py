"""Statistics over seeds that hold for small N (a handful of seeds is the usual case).

- the mean with Student's t 95% interval (a percentile bootstrap is far too narrow on
  4-10 seeds: it ignores that the spread itself is estimated);
- the interquartile mean (IQM, rliable's robust aggregate) with a BCa bootstrap 95%
  interval (``scipy.stats.bootstrap``);
- the fraction of seeds that solve the env with a Wilson score 95% interval.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sweep.engine.objective import iqm

Z95 = 1.959963984540054


@dataclass
class Summary:
    """Statistics of one number per seed."""

    values: list[float]
    threshold: float

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n > 1 else 0.0

    @property
    def mean_ci(self) -> tuple[float, float]:
        """Student's t 95% interval of the mean (a point when all values are equal)."""
        if self.n < 2 or self.std == 0:
            return self.mean, self.mean
        from scipy import stats as sps  # ~1 s of import: only where an interval is drawn

        half = sps.t.ppf(0.975, self.n - 1) * self.std / math.sqrt(self.n)
        return self.mean - half, self.mean + half

    @property
    def iqm(self) -> float:
        return iqm(self.values)

    def iqm_ci(self, resamples: int = 5000) -> tuple[float, float]:
        """BCa bootstrap 95% interval of the IQM (a point when it cannot vary)."""
        x = np.asarray(self.values, dtype=float)
        if self.n < 3 or np.all(x == x[0]):
            return self.iqm, self.iqm
        from scipy import stats as sps

        with warnings.catch_warnings():  # many equal values (500s): BCa degenerates, says so
            warnings.simplefilter("ignore")
            res = sps.bootstrap((x,), lambda a, axis: np.apply_along_axis(iqm, axis, a),
                                n_resamples=resamples, method="BCa", random_state=0,
                                vectorized=True)
        low, high = res.confidence_interval
        if not (math.isfinite(low) and math.isfinite(high)):  # degenerate resamples
            return self.iqm, self.iqm
        return float(low), float(high)

    @property
    def solved(self) -> int:
        return sum(v >= self.threshold for v in self.values)

    @property
    def solved_ci(self) -> tuple[float, float]:
        """Wilson score 95% interval of the solved fraction."""
        return wilson(self.solved, self.n)

    def line(self) -> str:
        low, high = self.mean_ci
        text = f"mean {self.mean:.1f} [{low:.1f}, {high:.1f}]"
        if math.isfinite(self.threshold):
            slow, shigh = self.solved_ci
            text += f"  solved {self.solved}/{self.n} [{slow:.0%}, {shigh:.0%}]"
        return text


def wilson(successes: int, n: int) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion (sound at 0/n and n/n, unlike p +- z*se)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(values: Sequence[float], threshold: float) -> Summary:
    return Summary([float(v) for v in values], threshold)
