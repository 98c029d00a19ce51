"""A study's trials as one table: ``trials.csv`` (written by sweep/present/report.py) and
``api.Study.trials`` (a pandas DataFrame) have the same columns, documented in COLUMNS
(and in docs/runs.md's table, which a test keeps equal to it).

The table reads Optuna's user attributes so that nobody else has to.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial

from rltrain.config import mask_url

COLUMNS = {  # column -> what it holds; then one params_<key> column per searched key
    "number": "the trial's number in the study (0, 1, ...)",
    "state": "COMPLETE, PRUNED, FAIL, RUNNING or WAITING",
    "value": "the objective: the seeds' scores aggregated (empty unless COMPLETE)",
    "last_step": "the env step of the trial's last reported evaluation (where it was pruned)",
    "seeds": "the seeds the trial trained on, one run each",
    "seed_scores": "each seed's score, in the order of seeds",
    "test_mean_reward": "the delivered agents' final test reward, mean over the seeds",
    "nb_steps": "env steps trained, summed over the seeds",
    "train_seconds": "training time, summed over the seeds",
    "run_id": "the first seed's MLflow run (what reproduce retrains)",
    "seed_run_ids": "each seed's MLflow run, in the order of seeds",
    "trial_run_id": "the trial's own MLflow run (the seeds' parent)",
    "recheck_seeds": "the fresh seeds of the recheck, if the trial was a leader",
    "recheck_tests": "the delivered agents' test reward on each recheck seed",
    "recheck_mean": "their mean",
    "recheck_run_ids": "the recheck's MLflow run per seed",
    "winner": "True for the study's winner (the recheck's, else the best objective)",
    "started": "when the trial started (the worker's local time, as Optuna records it)",
    "completed": "when it ended (empty while running)",
    "duration_seconds": "completed - started",
    "error": "why a FAIL trial failed",
    "overrides": "the trial's training overrides (its config; a password masked)",
}
PARAMS = "params_"  # params_agent.lr ...: the sampled value of each searched key


def recheck_results(study: optuna.Study) -> dict[int, dict[int, dict[str, Any]]]:
    """``{trial: {seed: {"run_id", "score", "test", "final_test"}}}`` of the recheck."""
    from sweep.engine.leaders import stored_results

    out: dict[int, dict[int, dict[str, Any]]] = {}
    for (trial, seed), result in stored_results(study).items():
        out.setdefault(trial, {})[seed] = result
    return out


def row(t: FrozenTrial, rechecked: dict[int, dict[str, Any]], winner: int | None
        ) -> dict[str, Any]:
    """One trial's row (see COLUMNS)."""
    a, seeds = t.user_attrs, sorted(rechecked)
    tests = [rechecked[s]["test"] for s in seeds]
    duration = (t.datetime_complete - t.datetime_start).total_seconds() \
        if t.datetime_complete and t.datetime_start else None
    values = {
        "number": t.number, "state": t.state.name, "value": t.value, "last_step": t.last_step,
        "seeds": a.get("seeds"), "seed_scores": a.get("seed_scores"),
        "test_mean_reward": a.get("test_mean_reward"), "nb_steps": a.get("nb_steps"),
        "train_seconds": a.get("train_seconds"), "run_id": a.get("run_id"),
        "seed_run_ids": a.get("seed_run_ids"), "trial_run_id": a.get("trial_run_id"),
        "recheck_seeds": seeds or None, "recheck_tests": tests or None,
        "recheck_mean": sum(tests) / len(tests) if tests else None,
        "recheck_run_ids": [rechecked[s]["run_id"] for s in seeds] or None,
        "winner": t.number == winner, "started": t.datetime_start,
        "completed": t.datetime_complete, "duration_seconds": duration,
        "error": a.get("error"), "overrides": [mask_url(o) for o in a.get("overrides", [])],
    }
    return {**values, **{f"{PARAMS}{k}": v for k, v in t.params.items()}}


def trials_frame(study: optuna.Study, winner: int | None) -> Any:
    """The study's trials as a pandas DataFrame, a row per trial, COLUMNS then the params
    (``winner``: the winning trial's number, or None)."""
    import pandas as pd

    rechecks = recheck_results(study)
    rows = [row(t, rechecks.get(t.number, {}), winner)
            for t in study.get_trials(deepcopy=False)]
    params = sorted({k for r in rows for k in r if k.startswith(PARAMS)})
    return pd.DataFrame(rows, columns=[*COLUMNS, *params])
