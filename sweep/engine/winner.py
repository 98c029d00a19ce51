"""The winner of a study, defined once, and the command that trains it again.

Every command and report that names "the winner" asks here: ``best``, ``reproduce best``
(and ``evaluate``, ``watch``, ``register`` best), ``studies``, the sweep's summary, its
``trials.csv``, the winner's registration and ``sweep.api``.

- The recheck's winner (sweep/engine/recheck.py retrains the leaders on fresh seeds): the
  leader whose delivered agents solve the env on the largest fraction of those seeds, ties
  broken by the objective on them. It is stored in the study (user attr ``recheck_winner``)
  with the leaders, seeds and budget it was chosen among, and stands while those leaders
  are still the study's best trials; an invocation with another budget or other fresh
  seeds drops it until the recheck completes for them.
- While no recheck winner stands: the best COMPLETE trial by objective.

Its retrain command trains the trial's config again on its first seed. No MLflow, no
TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from rltrain.config import ConfigError
from sweep.engine import objective, stats
from sweep.engine.leaders import Leader, fresh_seeds, leaders, missing, threshold_of, top_trials
from sweep.engine.settings import Plan
from sweep.engine.shell import command_line
from sweep.engine.storage import load_existing

KEY = "recheck_winner"  # study user attr (and parent-run tag): the recheck's winner


@dataclass
class Winner:
    """A study's winner and how to train it again."""

    study: str
    trial: int
    value: float
    run_id: str
    params: dict[str, Any]
    overrides: list[str]
    recheck: dict[str, Any] | None = None  # the recheck's statistics, when it picked it

    @property
    def command(self) -> str:
        return command_line("train", self.overrides)


# -- the recheck's winner -------------------------------------------------------------------

def choose(study: optuna.Study, plan: Plan) -> Leader | None:
    """The recheck's winner once every leader has all its seeds, else None: the largest
    fraction of seeds solved, then the best objective on them."""
    if plan.settings.recheck_top_k < 1 or missing(study, plan):
        return None
    found = leaders(study, plan)
    if not found:
        return None
    threshold = threshold_of(plan)
    sign = 1 if plan.settings.direction == "maximize" else -1

    def rank(lead: Leader) -> tuple[float, float]:
        value = objective.aggregate(lead.scores, plan.settings.aggregate)
        return lead.solved_fraction(threshold), sign * value

    return max(found, key=rank)


def record(study: optuna.Study, plan: Plan, best: Leader, found: list[Leader],
           threshold: float) -> None:
    """Store the recheck's winner with what it was chosen among: leaders, seeds, budget."""
    test = stats.summarize(best.tests, threshold)
    study.set_user_attr(KEY, {
        "trial": best.trial.number, "seeds": sorted(best.results), "tests": best.tests,
        "scores": best.scores, "solved": best.solved(threshold),
        "solved_fraction": best.solved_fraction(threshold), "threshold": threshold,
        "mean": test.mean, "ci95": list(test.mean_ci),
        "score": objective.aggregate(best.scores, plan.settings.aggregate),
        "leaders": [lead.trial.number for lead in found], "n_trials": plan.settings.n_trials})


def standing(study: optuna.Study) -> dict[str, Any] | None:
    """The stored recheck winner while it stands: None when there is none, or when the
    leaders it was chosen among are no longer the study's best trials (their recheck is not
    done)."""
    stored = study.user_attrs.get(KEY)
    if not stored:
        return None
    chosen_among = stored.get("leaders")  # absent in studies from before: trusted
    if chosen_among is not None and chosen_among != [
            t.number for t in top_trials(study, len(chosen_among))]:
        return None
    return stored


def forget_stale(study: optuna.Study, plan: Plan) -> None:
    """Drop the stored winner when this invocation's budget or fresh seeds are not the ones
    it was chosen for: until the recheck completes for them, the best objective stands."""
    stored = study.user_attrs.get(KEY)
    if not stored:
        return
    if stored.get("n_trials", plan.settings.n_trials) != plan.settings.n_trials \
            or sorted(stored.get("seeds", [])) != sorted(fresh_seeds(plan)) \
            or standing(study) is None:
        study.set_user_attr(KEY, None)


# -- the study's winner ---------------------------------------------------------------------

def _pick(study: optuna.Study) -> tuple[FrozenTrial, dict[str, Any] | None] | None:
    rechecked = standing(study)
    try:
        return (study.trials[rechecked["trial"]] if rechecked else study.best_trial), rechecked
    except ValueError:  # no trial completed
        return None


def trial_of(study: optuna.Study) -> FrozenTrial | None:
    """The winner's trial: the recheck's while it stands, else the best COMPLETE trial; None
    if no trial completed."""
    picked = _pick(study)
    return None if picked is None else picked[0]


def of(study: optuna.Study) -> Winner | None:
    """The study's winner (:func:`trial_of`) and how to train it again; None if no trial
    completed."""
    picked = _pick(study)
    if picked is None:
        return None
    best, rechecked = picked
    return Winner(study=study.study_name, trial=best.number, value=float(best.value),
                  run_id=str(best.user_attrs.get("run_id", "")), params=dict(best.params),
                  overrides=retrain_overrides(best), recheck=rechecked)


def named_by(sweep_args: list[str]) -> Winner:
    """The winner of the study a multirun line names (``sweep.*``, ``env=``, ``search=``);
    ConfigError if there is no such study or it has no completed trial."""
    study = load_existing(sweep_args)
    found = of(study)
    if found is None:
        raise ConfigError(f"sweep.study_name={study.study_name}: no completed trial yet")
    return found


def retrain_overrides(trial: FrozenTrial) -> list[str]:
    """The overrides that train this trial's config again, on its first seed."""
    overrides = list(trial.user_attrs.get("overrides", []))
    if trial.user_attrs.get("seeds") and not any(o.startswith("seed=") for o in overrides):
        overrides.append(f"seed={trial.user_attrs['seeds'][0]}")
    return overrides


def train_command(trial: FrozenTrial) -> str:
    """The exact command that trains this trial's config again (its first seed)."""
    return command_line("train", retrain_overrides(trial))
