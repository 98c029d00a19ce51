"""When a sweep stops claiming trials before ``sweep.n_trials``: a time limit or a target.

``sweep.timeout`` (seconds, per invocation): no trial is claimed after it; running trials
finish, and the recheck runs. ``sweep.stop_at``: no trial is claimed once a complete trial's
value reaches it (``>=`` when maximizing, ``<=`` when minimizing), as W&B's
``metric.target``; a rerun of a study whose target was reached claims nothing.
"""

from __future__ import annotations

import math
import time

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.engine.settings import SweepSettings


def deadline(s: SweepSettings) -> float | None:
    """The ``time.monotonic()`` after which this invocation claims no trial (a system-wide
    clock on Linux: the spawned workers read the same one), or None."""
    return time.monotonic() + s.timeout if s.timeout > 0 else None


def reached_by(study: optuna.Study, s: SweepSettings) -> FrozenTrial | None:
    """The first complete trial whose value reaches ``sweep.stop_at``, or None."""
    if math.isnan(s.stop_at):
        return None
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.value is not None and (t.value >= s.stop_at if s.direction == "maximize"
                                    else t.value <= s.stop_at):
            return t
    return None


def reason(study: optuna.Study, s: SweepSettings, until: float | None) -> str:
    """Why no new trial may be claimed now ("" when one may)."""
    if (hit := reached_by(study, s)) is not None:
        return (f"sweep.stop_at={s.stop_at:g} reached by trial {hit.number} "
                f"(value {hit.value:g}): no new trials")
    if until is not None and time.monotonic() >= until:
        return f"sweep.timeout={s.timeout:g} s reached: no new trials in this invocation"
    return ""
