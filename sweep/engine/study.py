"""The Optuna study: create or load it, run trials in worker processes, track them in MLflow.

    python -m sweep multirun sweep.n_trials=40 'agent.lr=tag(log,interval(1e-4,1e-2))'

One invocation is one MLflow parent run; each trial is a nested run (sweep/trial.py) whose
seeds train from a config Hydra composes out of the base config, the fixed overrides and
the sampled values; workers claim trials (sweep/workers.py), the warm start and
``sweep.enqueue``'s configs first (sweep/enqueue.py). When the trial budget is spent, or
``sweep.timeout`` / ``sweep.stop_at`` ended the claiming (sweep/stops.py), the leaders are
retrained on fresh seeds (sweep/recheck.py). The study lives in a storage
(by default a journal file in ``multirun/<study>/``, or a database shared by machines: see
sweep/storage.py), so running the same command again resumes it, and
``python -m sweep worker`` joins it.
"""

from __future__ import annotations

import os
import socket
import sys
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna

from rltrain.config import ConfigError, mask_url
from rltrain.secrets import masked_entry
from rltrain.tracking import check_server, tracked_run
from sweep.engine import enqueue, leaders, processes, recheck, stops
from sweep.engine.runs import end_dead_parents, end_runs_of_finished_trials, end_stale
from sweep.engine.samplers import make_pruner, make_sampler
from sweep.engine.settings import Plan, plan
from sweep.engine.storage import (
    budget_note,
    check_storage,
    claim_lock,
    fail_stale_trials,
    open_storage,
    process_identity,
)
from sweep.engine.workers import FINISHED, Job, claimed, ctrl_c_sets, failures, run_workers
from sweep.present import report


@dataclass
class Outcome:
    """How an invocation ended: exit code 0 (done), 1 (failures, worker crash), 130 (Ctrl-C)."""

    exit_code: int
    message: str
    parent_run_id: str = ""
    new_trials: int = 0


# -- the study --------------------------------------------------------------------------

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


# -- one invocation -------------------------------------------------------------------------

def open_study(plan: Plan, join: bool) -> tuple[Any, optuna.Study]:
    """Check that the storage and an http tracking server answer, then create or resume the
    study (``join``: load an existing one only) and queue its first configs (``multirun``:
    sweep/enqueue.py). Nothing is created when a check fails."""
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


def run(plan: Plan, join: bool = False) -> Outcome:
    """Create or resume the study (``join``: an existing one), run what is left of
    ``sweep.n_trials``, recheck the leaders (``multirun`` only), summarize."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    s = plan.settings
    until = stops.deadline(s)  # sweep.timeout counts from here, once per invocation
    storage, study = open_study(plan, join)
    if not join:  # another budget or other fresh seeds: the winner stands once rechecked
        leaders.forget_stale_winner(study, plan)
    plan.folder.mkdir(parents=True, exist_ok=True)
    left = s.n_trials - claimed(study)
    report.resuming(study, plan, left, joining=join)
    if stops.reached_by(study, s) is not None:  # a rerun: only what is left (the recheck)
        print(f"study {s.study_name}: {stops.reason(study, s, None)}", file=sys.stderr)
        left = 0
    to_recheck = not join and bool(leaders.missing(study, plan))
    if left <= 0 and not to_recheck:
        report.summary(study, plan)
        return Outcome(0, "nothing to do")
    n_existing = _started(study)
    ctx = processes.context()
    name = f"{s.study_name}-{datetime.now():%m%d-%H%M%S}"
    tags = {"sweep.study": s.study_name, "sweep.role": "parent",
            "sweep.storage": mask_url(plan.storage), "sweep.host": socket.gethostname(),
            "sweep.pid": os.getpid(), "sweep.process": process_identity(os.getpid())}
    with tracked_run(plan.tracking_uri, plan.experiment, name, tags=tags) as parent:
        report.log_plan(parent, plan)
        job = Job(plan, parent.run_id, ctx.Lock(), ctx.Event(), os.getpid(),
                  main_process=tags["sweep.process"], deadline=until)
        monitor = report.Monitor(plan, parent.run_id, lambda: optuna.load_study(
            study_name=s.study_name, storage=open_storage(plan)))
        crashed: list[str] = []
        with ctrl_c_sets(job.stop):
            if left > 0:
                with monitor:
                    crashed = run_workers(job, min(s.n_jobs, left))
                with claim_lock(storage, plan):
                    stale = fail_stale_trials(study, storage, plan)  # a crashed worker's
                end_stale(plan, stale)
                end_runs_of_finished_trials(plan, study)  # ends lost to a tracking outage
                if claimed(study) < s.n_trials and (why := stops.reason(study, s, until)):
                    print(f"study {s.study_name}: {why}", file=sys.stderr)
            outcome = _outcome(study, job, crashed)
            if outcome.exit_code == 0 and not join and _trials_done(study, plan, until):
                recheck.run(plan, study, parent, job.stop)
                outcome = _outcome(study, job, crashed)
                if outcome.exit_code == 0 and s.register_best:
                    _register_best(plan, study)
        report.finish(parent, study, plan)
        if outcome.exit_code == 130:
            parent.set_tags({"stopped": "interrupted"})
            parent.end("KILLED")
        elif outcome.exit_code:
            parent.set_tags({"error": outcome.message})
            parent.end("FAILED")
    outcome.new_trials = _started(study) - n_existing
    return outcome


def _started(study: optuna.Study) -> int:
    """Trials that ran or run (not those queued to run: warm start, enqueue, retries)."""
    return sum(t.state != optuna.trial.TrialState.WAITING for t in study.get_trials(deepcopy=False))


def _register_best(plan: Plan, study: optuna.Study) -> None:
    """Register the winner's agent in MLflow's Model Registry under the study's name: here
    when this process has TensorFlow loaded already (it trained: one worker), else in a
    spawned process, so the sweep's own process stays light; a failure is a warning, never
    the sweep's."""
    best = report.chosen(study, plan)
    if best is None or not best.user_attrs.get("run_id"):
        return
    args = (plan.tracking_uri, best.user_attrs["run_id"], plan.settings.study_name)
    try:
        if "tensorflow" in sys.modules:
            version = register(*args)
        else:
            with processes.context().Pool(1) as pool:
                version = pool.apply(register, args)
        print(f"registered the winner (trial {best.number}) as model "
              f"{plan.settings.study_name} version {version}: "
              f"python -m sweep watch models:/{plan.settings.study_name}/latest")
    except Exception as err:
        print(f"warning: the winner was not registered: {mask_url(str(err))[:300]}",
              file=sys.stderr)


@masked_entry
def register(uri: str, run_id: str, name: str) -> str:
    """Worker process: ``rltrain.registry.register_run``."""
    from rltrain.registry import register_run

    return register_run(uri, run_id, name)


def _trials_done(study: optuna.Study, plan: Plan, until: float | None) -> bool:
    """Every trial of ``sweep.n_trials`` finished, or sweep.timeout / sweep.stop_at ended the
    claiming and no trial is still running elsewhere: time for the recheck."""
    finished = study.get_trials(deepcopy=False, states=FINISHED)
    if len(finished) >= plan.settings.n_trials:
        return True
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return bool(stops.reason(study, plan.settings, until)) and not running


def _outcome(study: optuna.Study, job: Job, crashed: list[str]) -> Outcome:
    s = job.plan.settings
    failed = failures(study, job.parent_run_id)
    if job.stop.is_set():
        return Outcome(130, "interrupted: running trials ended FAILED; run the same command "
                            "to resume", job.parent_run_id)
    if crashed:
        return Outcome(1, "; ".join(crashed), job.parent_run_id)
    if len(failed) > s.max_failures:
        last = failed[-1].user_attrs.get("error", "")
        return Outcome(1, f"stopped: {len(failed)} trials failed, more than sweep.max_failures="
                          f"{s.max_failures}; last: trial {failed[-1].number}: {last}",
                       job.parent_run_id)
    return Outcome(0, "", job.parent_run_id)


def cmd_multirun(args: list[str], join: bool = False) -> int:
    """``python -m sweep multirun [overrides]``: create or resume a study and run its trials."""
    outcome = run(plan(args), join)
    if outcome.exit_code:
        message = mask_url(outcome.message)
        print(f"error: {message}" if outcome.exit_code != 130 else message, file=sys.stderr)
    return outcome.exit_code


def cmd_worker(args: list[str]) -> int:
    """``python -m sweep worker [overrides]``: join an existing study (same settings as its
    ``multirun``) and run trials until ``sweep.n_trials`` is reached over all workers."""
    return cmd_multirun(args, join=True)
