"""The Optuna study: create or resume it, join it, check a command line against it.

The study lives in a storage (by default a journal file in ``multirun/<study>/``, or a
database shared by machines: see sweep/engine/storage.py), so running the same command
again resumes it, and ``python -m sweep worker`` joins it. Resuming or joining with another
search space, other fixed overrides, metric, objective or direction is refused. Before
anything is created the storage and an http tracking server must answer; then the first
configs are queued (sweep/engine/enqueue.py) and what a killed invocation left is cleaned
up (sweep/engine/runs.py). One invocation's run: sweep/engine/invocation.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import optuna

from rltrain.config import ConfigError, mask_url
from rltrain.tracking import check_server
from sweep.engine import enqueue
from sweep.engine.runs import end_dead_parents, end_runs_of_finished_trials, end_stale
from sweep.engine.samplers import make_pruner, make_sampler
from sweep.engine.settings import Plan
from sweep.engine.storage import (
    budget_note,
    check_storage,
    claim_lock,
    fail_stale_trials,
    open_storage,
)


def create_study(plan: Plan, storage: Any) -> optuna.Study:
    """Create the study, or load it when it exists (the same command resumes it)."""
    s = plan.settings
    try:
        study = optuna.create_study(storage=storage, study_name=s.study_name,
                                    direction=s.direction, load_if_exists=True,
                                    sampler=make_sampler(s, s.seed), pruner=make_pruner(plan))
    except ValueError as err:  # e.g. an existing study with the other direction
        raise ConfigError(f"sweep.study_name={s.study_name}: {err}") from err
    if study.direction.name.lower() != s.direction:
        raise ConfigError(f"sweep.direction={s.direction}: study {s.study_name} was created "
                          f"to {study.direction.name.lower()}; use another sweep.study_name")
    if "space" in study.user_attrs:  # resuming: the trials must stay comparable
        check_same(plan, study, "a new study: sweep.study_name=NEW_NAME")
    else:
        study.set_user_attr("metric", s.metric)
        study.set_user_attr("space", plan.space.describe())
        study.set_user_attr("fixed", [mask_url(f) for f in plan.fixed])
        study.set_user_attr("objective", objective_of(plan))
    if plan.env and "env" not in study.user_attrs:
        study.set_user_attr("env", plan.env)  # for python -m sweep studies
    return study


def objective_of(plan: Plan) -> str:
    """What a trial's value means: its seeds and how they are scored."""
    s = plan.settings
    last = f" (last {s.score_last_n})" if s.seed_score == "last" else ""
    return (f"{s.seeds_per_trial} seeds per trial, seed score {s.seed_score}{last}, "
            f"aggregate {s.aggregate}")


def check_same(plan: Plan, study: optuna.Study, instead: str) -> None:
    """ConfigError if this command line's search space, fixed overrides, metric, objective
    or direction differ from the study's (a study that predates a record is not checked
    on it)."""
    s, attrs = plan.settings, study.user_attrs
    checks = [("search space", plan.space.describe(), attrs.get("space")),
              ("fixed overrides", _shared(plan.fixed), _shared(attrs.get("fixed", []))),
              ("sweep.metric", s.metric, attrs.get("metric")),
              ("objective", objective_of(plan), attrs.get("objective", objective_of(plan))),
              ("sweep.direction", s.direction, study.direction.name.lower())]
    for what, mine, theirs in checks:
        if mine != theirs:
            raise ConfigError(f"sweep.study_name={s.study_name}: {what} not the study's: "
                              f"{_difference(mine, theirs)}; run the study's own settings "
                              f"again to resume it, or start {instead}")


def join_study(plan: Plan, storage: Any) -> optuna.Study:
    """Load an existing study for ``worker``; ConfigError if there is none, or if this
    command line's search space, fixed overrides, metric or direction differ from its own."""
    s = plan.settings
    try:
        study = optuna.load_study(study_name=s.study_name, storage=storage)
    except KeyError:
        raise ConfigError(f"sweep.study_name={s.study_name}: no such study in "
                          f"{mask_url(plan.storage)}; start it with python -m sweep multirun "
                          "(same settings)") from None
    check_same(plan, study, "a new study with python -m sweep multirun")
    return study


def _shared(fixed: list[str]) -> list[str]:
    """Fixed overrides every worker must share, in any order (where each worker sends its
    runs, ``tracking.*``, may differ)."""
    return sorted(mask_url(f) for f in fixed if not f.lstrip("+~").startswith("tracking."))


def _difference(mine: Any, theirs: Any) -> str:
    if isinstance(mine, dict) and isinstance(theirs, dict):
        for key in sorted(set(mine) | set(theirs)):
            if mine.get(key) != theirs.get(key):
                return f"{key}: {mine.get(key, '(not searched)')} here, " \
                       f"{theirs.get(key, '(not searched)')} in the study"
    if isinstance(mine, list) and isinstance(theirs, list):  # name only what differs
        here = [m for m in mine if m not in theirs]
        there = [t for t in theirs if t not in mine]
        return f"{' '.join(here) or '(none)'} here, {' '.join(there) or '(none)'} in the study"
    return f"{mine} here, {theirs} in the study"


def open_study(plan: Plan, join: bool) -> tuple[Any, optuna.Study]:
    """Check that the storage and an http tracking server answer, then create or resume the
    study (``join``: load an existing one only) and queue its first configs (``multirun``:
    sweep/engine/enqueue.py). Nothing is created when a check fails."""
    check_storage(plan)
    check_server(plan.tracking_uri)
    if note := budget_note(plan):
        print(note, file=sys.stderr)
    if join and "://" not in plan.storage and not Path(plan.storage).exists():
        raise ConfigError(f"sweep.study_name={plan.settings.study_name}: no study at "
                          f"{plan.storage}; start it with python -m sweep multirun")
    storage = open_storage(plan)
    study = join_study(plan, storage) if join else create_study(plan, storage)
    with claim_lock(storage, plan):
        stale = fail_stale_trials(study, storage, plan)
        if not join and (queued := enqueue.queue_first(study, plan.warm, plan.queue,
                                                      plan.settings.enqueue)):
            print(f"study {plan.settings.study_name}: {queued} config(s) queued to run first "
                  f"({_queued_from(plan)})", file=sys.stderr)
    end_stale(plan, stale)
    end_dead_parents(plan)
    end_runs_of_finished_trials(plan, study)
    return storage, study


def _queued_from(plan: Plan) -> str:
    parts = ["sweep.warm_start: the config's own " + ", ".join(plan.warm)] if plan.warm else []
    if plan.queue:
        parts.append(f"sweep.enqueue={plan.settings.enqueue}")
    return "; ".join(parts)
