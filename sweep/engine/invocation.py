"""One invocation of a study: ``multirun`` (create or resume it) or ``worker`` (join it).

    python -m sweep multirun sweep.n_trials=40 'agent.lr=tag(log,interval(1e-4,1e-2))'

One invocation is one MLflow parent run; each trial is a nested run (sweep/engine/trial.py)
whose seeds train from a config Hydra composes out of the base config, the fixed overrides
and the sampled values; workers claim trials (sweep/engine/workers.py), the warm start and
``sweep.enqueue``'s configs first (sweep/engine/enqueue.py). When the trial budget is spent,
or ``sweep.timeout`` / ``sweep.stop_at`` ended the claiming (sweep/engine/stops.py), the
leaders are retrained on fresh seeds (sweep/engine/recheck.py) and the winner
(sweep/engine/winner.py) is registered when ``sweep.register_best`` asks. What the
invocation shows and records beside its trials (status bar, summary, the parent run's
tables and plots) comes from its :class:`View` (sweep/present/report.py).
"""

from __future__ import annotations

import os
import socket
import sys
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import optuna
from optuna.trial import FrozenTrial

from rltrain.config import mask_url
from rltrain.secrets import masked_entry
from rltrain.tracking import Tracker, tracked_run
from sweep.engine import processes, recheck, stops
from sweep.engine import winner as winner_
from sweep.engine.leaders import missing
from sweep.engine.runs import end_runs_of_finished_trials, end_stale
from sweep.engine.settings import Plan
from sweep.engine.storage import claim_lock, fail_stale_trials, open_storage, process_identity
from sweep.engine.study import open_study
from sweep.engine.workers import FINISHED, Job, claimed, failures, run_workers, stop_signals_set


class View(Protocol):
    """What an invocation shows and records beside its trials (sweep/present/report.py is
    one: the console report and the parent run's summary)."""

    def resuming(self, study: optuna.Study, plan: Plan, left: int,
                 joining: bool = False) -> None: ...

    def summary(self, study: optuna.Study, plan: Plan) -> FrozenTrial | None: ...

    def log_plan(self, parent: Tracker, plan: Plan) -> None: ...

    def Monitor(self, plan: Plan, invocation: str,  # report.Monitor: a class
                load: Callable[[], optuna.Study]) -> AbstractContextManager[Any]: ...

    def finish(self, parent: Tracker, study: optuna.Study, plan: Plan) -> None: ...


@dataclass
class Outcome:
    """How an invocation ended: exit code 0 (done), 1 (failures, worker crash), 130 (Ctrl-C)."""

    exit_code: int
    message: str
    parent_run_id: str = ""
    new_trials: int = 0

    def tell(self) -> int:
        """Say how it ended (``error: ...``, or the Ctrl-C line, on stderr) unless it
        succeeded; return the exit code."""
        if self.exit_code:
            message = mask_url(self.message)
            print(f"error: {message}" if self.exit_code != 130 else message, file=sys.stderr)
        return self.exit_code


def run(plan: Plan, view: View, join: bool = False) -> Outcome:
    """Create or resume the study (``join``: an existing one), run what is left of
    ``sweep.n_trials``, recheck the leaders (``multirun`` only), summarize (``view``)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    s = plan.settings
    until = stops.deadline(s)  # sweep.timeout counts from here, once per invocation
    storage, study = open_study(plan, join)
    if not join:  # another budget or other fresh seeds: the winner stands once rechecked
        winner_.forget_stale(study, plan)
    plan.folder.mkdir(parents=True, exist_ok=True)
    left = s.n_trials - claimed(study)
    view.resuming(study, plan, left, joining=join)
    if stops.reached_by(study, s) is not None:  # a rerun: only what is left (the recheck)
        print(f"study {s.study_name}: {stops.reason(study, s, None)}", file=sys.stderr)
        left = 0
    to_recheck = not join and bool(missing(study, plan))
    if left <= 0 and not to_recheck:
        view.summary(study, plan)
        return Outcome(0, "nothing to do")
    n_existing = _started(study)
    ctx = processes.context(start=min(s.n_jobs, left) > 1)  # trial workers fork from it
    name = f"{s.study_name}-{datetime.now():%m%d-%H%M%S}"
    tags = {"sweep.study": s.study_name, "sweep.role": "parent",
            "sweep.storage": mask_url(plan.storage), "sweep.host": socket.gethostname(),
            "sweep.pid": os.getpid(), "sweep.process": process_identity(os.getpid())}
    with tracked_run(plan.tracking_uri, plan.experiment, name, tags=tags) as parent:
        view.log_plan(parent, plan)
        job = Job(plan, parent.run_id, ctx.Lock(), ctx.Event(), os.getpid(),
                  main_process=tags["sweep.process"], deadline=until)
        monitor = view.Monitor(plan, parent.run_id, lambda: optuna.load_study(
            study_name=s.study_name, storage=open_storage(plan)))
        crashed: list[str] = []
        with stop_signals_set(job.stop):
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
        view.finish(parent, study, plan)
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
    best = winner_.trial_of(study)
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
