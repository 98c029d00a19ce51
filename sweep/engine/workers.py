"""Workers: each claims a trial (atomically with the budget check), trains it, repeats.

With one worker the invocation's own process trains; with more, spawned processes do
(TensorFlow is not fork-safe). Ctrl-C in the main process sets ``Job.stop``; each worker
stops at its next check, and its running trial ends FAILED.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import Trial, TrialState

from rltrain.retry import ServerUnavailable
from rltrain.secrets import masked_entry
from sweep.engine import processes
from sweep.engine.runs import end_parent_run, end_stale
from sweep.engine.samplers import make_pruner, make_sampler, sampler_seed
from sweep.engine.settings import Plan
from sweep.engine.stops import reason
from sweep.engine.storage import (
    Heartbeat,
    claim_lock,
    fail_stale_trials,
    heartbeats,
    open_storage,
    process_identity,
    same_process,
)
from sweep.engine.trial import Context, run_trial

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
CLAIMED = (*FINISHED, TrialState.RUNNING)  # what counts against sweep.n_trials
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C; kill, scancel, a container's stop
STOPPED = "stopped by Ctrl-C or SIGTERM"  # a trial's error when the sweep was asked to stop


@dataclass
class Job:
    """What every worker of one invocation shares (picklable for spawned processes)."""

    plan: Plan
    parent_run_id: str
    lock: Any           # multiprocessing Lock: the claim lock of storages without their own
    stop: Any           # multiprocessing Event: set by Ctrl-C
    main_pid: int       # the invocation's own process
    in_subprocess: bool = False
    main_process: str = ""  # its process_identity: a reused main_pid is not it
    deadline: float | None = None  # sweep.timeout: time.monotonic() after which none is claimed


def load_study(job: Job, storage: Any) -> optuna.Study:
    """The study as a worker sees it (its sampler is seeded anew for each trial it asks)."""
    s = job.plan.settings
    return optuna.load_study(study_name=s.study_name, storage=storage,
                             sampler=make_sampler(s, s.seed), pruner=make_pruner(job.plan))


def claimed(study: optuna.Study) -> int:
    """Finished and running trials: ``sweep.n_trials`` is a total over every invocation."""
    return len(study.get_trials(deepcopy=False, states=CLAIMED))


def failures(study: optuna.Study, invocation: str) -> list[optuna.trial.FrozenTrial]:
    """The failed trials of one invocation (``sweep.max_failures`` counts these)."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if t.user_attrs.get("invocation") == invocation]


def main_gone(job: Job, parent: int) -> bool:
    """A worker's invocation died (the worker's ``parent`` is the forkserver, which may
    outlive it for a moment): nobody will collect this worker's results."""
    return job.in_subprocess and (os.getppid() != parent
                                  or not same_process(job.main_pid, job.main_process))


@masked_entry(exit_on_error=True)
def work(job: Job, worker: int) -> None:
    """One worker: claim a trial (atomically with the budget check), train it, repeat."""
    if job.in_subprocess:
        ignore_stop_signals()  # the parent turns Ctrl-C and SIGTERM into job.stop
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    storage = open_storage(job.plan)
    study = load_study(job, storage)
    parent = os.getppid()

    def should_stop() -> str:
        """Why this worker should stop now, or ""."""
        if job.stop.is_set():
            return STOPPED
        if main_gone(job, parent):
            return "the sweep's main process is gone"
        return ""

    s, waiting = job.plan.settings, False
    while not should_stop():
        trial = claim(study, storage, job, worker)
        if trial is None:
            break
        if trial == WAIT:  # the rest runs elsewhere; a dead worker's trial would come back
            waiting = wait_for_others(worker, waiting)
            continue
        waiting = False
        with Heartbeat(storage, trial, s.heartbeat_interval):
            state = run_trial(study, trial, Context(job.plan, job.parent_run_id, should_stop))
        if state == TrialState.FAIL and tracking_gone(storage, trial, worker):
            break
    if main_gone(job, parent):  # nobody else will close the parent run
        end_parent_run(job.plan, job.parent_run_id)


def wait_for_others(worker: int, waiting: bool) -> bool:
    """Sleep a poll interval while the last trials run elsewhere (saying so once)."""
    if not waiting:
        print(f"worker {worker}: the last trials run in other workers; waiting for "
              "them (a dead worker's trial is retried here)", file=sys.stderr)
    time.sleep(WAIT_POLL)
    return True


def tracking_gone(storage: Any, trial: Trial, worker: int) -> bool:
    """The trial failed because the tracking server did not come back within its bound:
    every next trial would fail too, so the worker says so and stops."""
    error = storage.get_trial(trial._trial_id).user_attrs.get("error", "")
    if not str(error).startswith(f"{ServerUnavailable.__name__}:"):
        return False
    print(f"worker {worker}: stopping: the tracking server stayed down past "
          "SWEEP_TRACKING_WAIT; run the same command to resume once it is back",
          file=sys.stderr, flush=True)
    return True


WAIT = "wait"
WAIT_POLL = 1.0  # seconds between looks at the study while the last trials run elsewhere


def claim(study: optuna.Study, storage: Any, job: Job, worker: int) -> Trial | str | None:
    """Under the claim lock: fail the trials of dead workers, then a new (or retried) trial,
    WAIT while the budget is taken only by trials running elsewhere (database storage), or
    None when the budget is spent, too many trials failed, or sweep.timeout or
    sweep.stop_at says stop (sweep/engine/stops.py)."""
    s = job.plan.settings
    trial: Trial | str | None = None
    with claim_lock(storage, job.plan, fallback=job.lock):  # no lock a dead worker keeps
        stale = fail_stale_trials(study, storage, job.plan)
        trials = study.get_trials(deepcopy=False, states=CLAIMED)
        finished = sum(t.state in FINISHED for t in trials)
        if finished >= s.n_trials or len(failures(study, job.parent_run_id)) > s.max_failures \
                or reason(study, s, job.deadline):
            trial = None
        elif len(trials) >= s.n_trials:
            trial = WAIT if heartbeats(storage) else None
        else:  # under the lock the next trial's number is known: seed its draws with it
            study.sampler = make_sampler(s, sampler_seed(s, len(study.trials)))
            trial = study.ask()
            Heartbeat(storage, trial, s.heartbeat_interval).beat()  # alive from the start
            for key, value in {"pid": os.getpid(), "process": process_identity(os.getpid()),
                               "host": socket.gethostname(),
                               "invocation": job.parent_run_id, "worker": worker,
                               "main_pid": job.main_pid,
                               "main_process": job.main_process}.items():
                trial.set_user_attr(key, value)
    end_stale(job.plan, stale)  # MLflow, after the lock: a slow server stalls no other worker
    return trial


def run_workers(job: Job, n_workers: int) -> list[str]:
    """``n_workers`` worker processes (sweep/engine/processes.py), or this process for one.
    Returns a line per worker that crashed."""
    if n_workers == 1:
        work(job, 0)
        return []

    ctx = processes.context()
    job.in_subprocess = True
    procs = [ctx.Process(target=work, args=(job, i), name=f"sweep-worker-{i}", daemon=False)
             for i in range(n_workers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    return [f"worker {i} (pid {p.pid}) exited with code {p.exitcode}"
            for i, p in enumerate(procs) if p.exitcode]


def ignore_stop_signals() -> None:
    """In a worker process: the main process turns Ctrl-C and SIGTERM into its stop event, so
    a signal to the whole process group ends trials FAILED instead of killing them RUNNING."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


@contextmanager
def stop_signals_set(stop: Any) -> Iterator[None]:
    """The first Ctrl-C (or SIGTERM) asks every worker to stop (running trials end FAILED);
    a second one raises KeyboardInterrupt at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\nstopping ({name}): running trials end as FAILED; run the same command to "
              "resume (Ctrl-C again to quit at once)", file=sys.stderr)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
