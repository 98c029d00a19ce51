"""What the recheck found: its stored results and the leaders (who won it:
sweep/engine/winner.py).

Each recheck task's result is a study user attr of its own, ``recheck:<trial>:<seed>``, so
invocations rechecking at once never overwrite each other's results (studies made before
kept them all in one attr, ``recheck``: still read). Only results on the fresh seeds of the
current ``sweep.seed``/``sweep.recheck_seeds`` count. No MLflow, no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.engine import seeds
from sweep.engine.settings import Plan

KEY = "recheck"  # study user attrs "recheck:<trial>:<seed>": one task's result
RESULT_FIELDS = ("run_id", "score", "test", "final_test")


@dataclass
class Leader:
    """A rechecked trial and its results on the current fresh seeds."""

    trial: FrozenTrial
    results: dict[int, dict[str, Any]] = field(default_factory=dict)  # seed -> result

    @property
    def scores(self) -> list[float]:
        return [r["score"] for _, r in sorted(self.results.items())]

    @property
    def tests(self) -> list[float]:
        return [r["test"] for _, r in sorted(self.results.items())]

    def solved(self, threshold: float) -> int:
        return sum(t >= threshold for t in self.tests)

    def solved_fraction(self, threshold: float) -> float:
        return self.solved(threshold) / len(self.results) if self.results else 0.0


def store(study: optuna.Study, out: dict[str, Any]) -> None:
    """Store one task's result (``out``: number, seed and RESULT_FIELDS) under its own key."""
    study.set_user_attr(f"{KEY}:{out['number']}:{out['seed']}",
                        {k: out[k] for k in RESULT_FIELDS})


def stored_results(study: optuna.Study) -> dict[tuple[int, int], dict[str, Any]]:
    """Every stored result, ``{(trial, seed): result}``, of any settings."""
    attrs = study.user_attrs
    found = {}
    for key, value in attrs.get(KEY, {}).items():  # a study from before: one attr
        number, seed = key.split("/")
        found[int(number), int(seed)] = value
    for key, value in attrs.items():
        if key.startswith(f"{KEY}:"):
            _, number, seed = key.split(":")
            found[int(number), int(seed)] = value
    return found


def fresh_seeds(plan: Plan) -> list[int]:
    return seeds.recheck_seeds(plan.settings.seed, plan.settings.recheck_seeds)


def top_trials(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The ``k`` best complete trials, best first."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    done.sort(key=lambda t: t.value, reverse=study.direction.name == "MAXIMIZE")
    return done[:k]


def leaders(study: optuna.Study, plan: Plan) -> list[Leader]:
    """The ``recheck_top_k`` best complete trials, with their results on the fresh seeds of
    these settings (results on other seeds, from other settings, do not count)."""
    stored, fresh = stored_results(study), fresh_seeds(plan)
    return [Leader(t, {s: stored[t.number, s] for s in fresh if (t.number, s) in stored})
            for t in top_trials(study, plan.settings.recheck_top_k)]


def missing(study: optuna.Study, plan: Plan) -> list[tuple[Leader, int]]:
    """(leader, seed) tasks without a stored result."""
    return [(lead, s) for lead in leaders(study, plan) for s in fresh_seeds(plan)
            if s not in lead.results]


def threshold_of(plan: Plan) -> float:
    """The solve threshold of the env the study trains on (NaN when it has none)."""
    from rltrain.config import compose_config, reward_threshold

    return reward_threshold(compose_config(plan.fixed).env)
