"""Which seeds train what: a trial's seeds, the recheck's and ``evaluate``'s never overlap.

- trial ``n`` of a sweep with ``sweep.seed=S``: ``S*1,000,000 + n*100 + j``, j < 100;
- the recheck of that sweep's leaders: ``1,000,000,000 + S*1,000 + i``, i < 1,000;
- ``python -m sweep evaluate``: ``2,000,000,000 + i``.

Every seed stays below 2**32 - 3,000,000, so the env's evaluation and test offsets
(``rltrain.train``) keep numpy's seeds in range.
"""

from __future__ import annotations

MAX_SEEDS_PER_TRIAL = 100
MAX_TRIALS = 10_000          # trial numbers below this (seeds S*1e6 + n*100 + j)
MAX_SWEEP_SEED = 1_000
RECHECK_BASE = 1_000_000_000
MAX_RECHECK_SEEDS = 1_000
EVALUATE_BASE = 2_000_000_000


def trial_seeds(sweep_seed: int, number: int, k: int) -> list[int]:
    """The ``k`` seeds of trial ``number``."""
    if number >= MAX_TRIALS:
        raise ValueError(f"trial {number}: a study holds at most {MAX_TRIALS} trials")
    return [sweep_seed * 1_000_000 + number * MAX_SEEDS_PER_TRIAL + j for j in range(k)]


def recheck_seeds(sweep_seed: int, m: int) -> list[int]:
    """The ``m`` fresh seeds the leaders of a sweep are rechecked on."""
    return [RECHECK_BASE + sweep_seed * MAX_RECHECK_SEEDS + i for i in range(m)]


def evaluate_seeds(n: int, start: int = 0) -> list[int]:
    """``evaluate``'s fresh seeds: no sweep trains on them."""
    return [EVALUATE_BASE + start + i for i in range(n)]
