"""The Optuna study: create or load it, run trials in worker processes, track them in MLflow.

    python -m sweep multirun sweep.n_trials=40 'agent.lr=tag(log,interval(1e-4,1e-2))'

One invocation is one MLflow parent run; each trial is a nested child run trained by
``rltrain.run.tracked_train`` from a config Hydra composes out of the base config, the
fixed overrides and the sampled values. Each greedy evaluation is reported to the trial,
and the pruner may stop it there. The study lives in a storage (by default a journal file
in ``multirun/<study>/``, or a database shared by machines: see sweep/storage.py), so
running the same command again resumes it, and ``python -m sweep worker`` joins it.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import sys
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from omegaconf import DictConfig
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import Trial, TrialState

from rltrain.config import ConfigError, compose_config, mask_url, validate
from rltrain.loop import StopTraining
from rltrain.tracking import check_server, tracked_run, tracker_for
from sweep import report
from sweep import space as space_
from sweep.settings import Plan, SweepSettings, plan
from sweep.storage import (
    Heartbeat,
    check_storage,
    claim_lock,
    end_parent_run,
    fail_stale_trials,
    heartbeats,
    open_storage,
    tag_trial_runs,
)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
CLAIMED = (*FINISHED, TrialState.RUNNING)  # what counts against sweep.n_trials
STOP_CHECK_STEPS = 256  # how often a running trial looks for Ctrl-C


class Interrupted(KeyboardInterrupt):
    """Ctrl-C reached a running trial: it ends FAILED and the worker stops."""


@dataclass
class Job:
    """What every worker of one invocation shares (picklable for spawned processes)."""

    plan: Plan
    parent_run_id: str
    lock: Any           # multiprocessing Lock: budget check + ask are atomic across workers
    stop: Any           # multiprocessing Event: set by Ctrl-C
    n_existing: int     # trials in the study when this invocation began
    main_pid: int       # the invocation's own process
    salt: int = 0       # database storage: this invocation's share of the samplers' seeds
    in_subprocess: bool = False


@dataclass
class Outcome:
    """How an invocation ended: exit code 0 (done), 1 (failures, worker crash), 130 (Ctrl-C)."""

    exit_code: int
    message: str
    parent_run_id: str = ""
    new_trials: int = 0


# -- storage, sampler, pruner --------------------------------------------------------------

def sampler_seed(s: SweepSettings, n_existing: int, worker: int, salt: int = 0) -> int:
    """Distinct per worker and per resume (else both replay the same random start-up trials);
    ``salt`` (host and process) keeps invocations on several machines apart."""
    entropy = [s.seed, n_existing, worker, *([salt] if salt else [])]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def make_sampler(s: SweepSettings, seed: int) -> optuna.samplers.BaseSampler:
    samplers = optuna.samplers
    if s.sampler == "random":
        return samplers.RandomSampler(seed=seed)
    if s.sampler == "cmaes":
        return samplers.CmaEsSampler(seed=seed, n_startup_trials=s.sampler_startup_trials)
    if s.sampler == "gp":
        return samplers.GPSampler(seed=seed, n_startup_trials=s.sampler_startup_trials)
    return samplers.TPESampler(seed=seed, n_startup_trials=s.sampler_startup_trials)


def make_pruner(plan: Plan) -> optuna.pruners.BasePruner:
    s, pruners = plan.settings, optuna.pruners
    if s.pruner == "median":
        return pruners.MedianPruner(n_startup_trials=s.prune_startup_trials,
                                    n_warmup_steps=s.prune_warmup_steps)
    if s.pruner == "hyperband":
        searched = "train.nb_steps" in plan.space.dimensions
        return pruners.HyperbandPruner(
            min_resource=max(1, s.prune_warmup_steps, plan.eval_interval),
            max_resource="auto" if searched else plan.nb_steps, reduction_factor=3)
    if s.pruner == "threshold":
        bound = {"lower" if s.direction == "maximize" else "upper": s.prune_threshold}
        return pruners.ThresholdPruner(n_warmup_steps=s.prune_warmup_steps, **bound)
    return pruners.NopPruner()


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
    if not study.user_attrs:
        study.set_user_attr("metric", s.metric)
        study.set_user_attr("space", plan.space.describe())
        study.set_user_attr("fixed", [mask_url(f) for f in plan.fixed])
    return study


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
    attrs = study.user_attrs
    checks = [("search space", plan.space.describe(), attrs.get("space")),
              ("fixed overrides", _shared(plan.fixed), _shared(attrs.get("fixed", []))),
              ("sweep.metric", s.metric, attrs.get("metric")),
              ("sweep.direction", s.direction, study.direction.name.lower())]
    for what, mine, theirs in checks:
        if mine != theirs:
            raise ConfigError(f"sweep.study_name={s.study_name}: {what} not the study's: "
                              f"{_difference(mine, theirs)}")
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
    if isinstance(mine, list) and isinstance(theirs, list):
        return f"{' '.join(mine) or '(none)'} here, {' '.join(theirs) or '(none)'} in the study"
    return f"{mine} here, {theirs} in the study"


def load_study(job: Job, worker: int, storage: Any) -> optuna.Study:
    s = job.plan.settings
    seed = sampler_seed(s, job.n_existing, worker, job.salt)
    return optuna.load_study(study_name=s.study_name, storage=storage,
                             sampler=make_sampler(s, seed), pruner=make_pruner(job.plan))


def claimed(study: optuna.Study) -> int:
    """Finished and running trials: ``sweep.n_trials`` is a total over every invocation."""
    return len(study.get_trials(deepcopy=False, states=CLAIMED))


def failures(study: optuna.Study, invocation: str) -> list[optuna.trial.FrozenTrial]:
    """The failed trials of one invocation (``sweep.max_failures`` counts these)."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if t.user_attrs.get("invocation") == invocation]


# -- one trial ------------------------------------------------------------------------------

def trial_seed(s: SweepSettings, number: int) -> int:
    """``seed`` of trial ``number``: repeatable, and distinct across trials and sweep seeds."""
    return s.seed * 10_000 + number


def trial_overrides(plan: Plan, number: int, values: dict[str, Any]) -> list[str]:
    """What ``python -m sweep train`` needs to train this trial's config again."""
    out = [*plan.fixed, *space_.overrides(values)]
    if not plan.seed_fixed:
        out.append(f"seed={trial_seed(plan.settings, number)}")
    return out


def run_name(number: int) -> str:
    return f"trial-{number:03d}"


class TrialCallback:
    """Reports each evaluation to the trial (the pruner may stop it there), fails a trial
    whose loss turns NaN, and stops on Ctrl-C.

    Evaluations run at the first episode end after each ``eval_interval`` steps; they are
    reported at the nominal step (2000, 4000 ...) so the median pruner can compare trials.
    """

    def __init__(self, trial: Trial, eval_interval: int, nb_steps: int,
                 should_stop: Callable[[], str]) -> None:
        self.trial, self.interval, self.nb_steps = trial, eval_interval, nb_steps
        self.should_stop = should_stop
        self.agent: Any = None
        self.steps = 0

    def set_model(self, agent: Any) -> None:
        self.agent = agent

    def on_step_end(self, step: int, logs: dict[str, Any]) -> None:
        self.steps += 1
        a, metrics = self.agent, logs.get("metrics")
        trained = (a is not None and metrics and a.step > getattr(a, "nb_steps_warmup", math.inf)
                   and a.step % getattr(a, "train_interval", 1) == 0)
        if trained and metrics[0] != metrics[0]:
            raise FloatingPointError(f"NaN loss at step {a.step}")
        if self.steps % STOP_CHECK_STEPS == 0 and (why := self.should_stop()):
            raise Interrupted(why)

    def on_evaluation_end(self, step: int, logs: dict[str, Any]) -> None:
        at = step if step >= self.nb_steps else step // self.interval * self.interval
        self.trial.report(float(logs["mean_reward"]), at)
        if self.trial.should_prune():
            raise StopTraining("pruned")
        if why := self.should_stop():
            raise Interrupted(why)


def run_trial(study: optuna.Study, trial: Trial, job: Job,
              should_stop: Callable[[], str]) -> TrialState:
    """Sample, compose, train and tell. Any exception ends the trial FAILED; a real
    KeyboardInterrupt is re-raised after that."""
    from rltrain.run import tracked_train

    plan = job.plan
    retry_of = trial.user_attrs.get("retry_of")  # a dead worker's trial again: same seed
    try:
        values = space_.suggest(trial, plan.space)
        overrides = trial_overrides(plan, trial.number if retry_of is None else retry_of, values)
        shown = [mask_url(o) for o in overrides]  # what is stored, logged and printed
        trial.set_user_attr("overrides", shown)
        tags = {"sweep.study": plan.settings.study_name, "sweep.trial": trial.number,
                "sweep.state": "RUNNING", "sweep.invocation": job.parent_run_id,
                **({} if retry_of is None else {"sweep.retry_of": retry_of}),
                **{f"sampled.{k}": v for k, v in values.items()}}
        cfg = trial_config(plan, trial.number, overrides, tags, job.parent_run_id)
        callback = TrialCallback(trial, cfg.train.eval_interval, cfg.train.nb_steps,
                                 should_stop)
        run_id, result = tracked_train(cfg, overrides=shown, callbacks=[callback],
                                       tags=tags, parent_run_id=job.parent_run_id,
                                       folder=Path(cfg.output_dir))
    except BaseException as err:
        _fail(study, trial, job, err)
        if isinstance(err, Exception | Interrupted):
            return TrialState.FAIL
        raise
    try:
        trial.set_user_attr("run_id", run_id)
        trial.set_user_attr("nb_steps", result.nb_steps)
        trial.set_user_attr("train_seconds", round(result.train_seconds, 2))
        if result.test_rewards:
            trial.set_user_attr("test_mean_reward", result.test_mean_reward)
        return _tell(study, trial, job, run_id, cfg, result)
    except UpdateFinishedTrialError:  # failed meanwhile by a worker that heard no heartbeat
        print(f"warning: trial {trial.number} was failed by another worker (no heartbeat for "
              f"{plan.settings.grace_period} s); its result is dropped", file=sys.stderr)
        tag_trial_runs(plan, trial.number, "FAIL", job.parent_run_id)
        return TrialState.FAIL


def trial_config(plan: Plan, number: int, overrides: list[str], tags: dict[str, Any],
                 parent_run_id: str) -> DictConfig:
    """Compose and validate the trial's config. A bad combination of sampled values gets a
    FAILED child run carrying the reason (no training run exists to carry it)."""
    folder = (plan.folder / run_name(number)).resolve()
    internal = ["train.progress=false", f"tracking.run_name={run_name(number)}",
                f"output_dir={space_.format_value(str(folder))}"]
    try:
        cfg = compose_config([*overrides, *internal])
        validate(cfg)
    except ConfigError:
        with tracked_run(plan.tracking_uri, plan.experiment, run_name(number),
                         tags={**tags, "sweep.state": "FAIL"}, parent_run_id=parent_run_id):
            raise
    return cfg


def _tell(study: optuna.Study, trial: Trial, job: Job, run_id: str, cfg: DictConfig,
          result: Any) -> TrialState:
    if result.stopped == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
        state = TrialState.PRUNED
    else:
        value = objective_value(job.plan.settings.metric, result)
        if math.isfinite(value):
            study.tell(trial, value)
            state = TrialState.COMPLETE
        else:
            trial.set_user_attr("error", f"{job.plan.settings.metric} is {value}")
            study.tell(trial, state=TrialState.FAIL)
            state = TrialState.FAIL
    tracker_for(cfg.tracking.uri, run_id).set_tags({"sweep.state": state.name})
    return state


def objective_value(metric: str, result: Any) -> float:
    """``eval/mean_reward``: the last greedy evaluation; ``test/mean_reward``: the final test."""
    if metric == "test/mean_reward":
        return result.test_mean_reward
    return float(result.evaluations[-1][1]) if result.evaluations else math.nan


def _fail(study: optuna.Study, trial: Trial, job: Job, err: BaseException) -> None:
    reason = mask_url(f"{type(err).__name__}: {err}")[:2000]
    try:
        with contextlib.suppress(UpdateFinishedTrialError):  # already failed by another worker
            trial.set_user_attr("error", reason)
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    finally:
        tag_trial_runs(job.plan, trial.number, "FAIL", job.parent_run_id)


# -- workers --------------------------------------------------------------------------------

def work(job: Job, worker: int) -> None:
    """One worker: claim a trial (atomically with the budget check), train it, repeat."""
    if job.in_subprocess:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into job.stop
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    storage = open_storage(job.plan)
    study = load_study(job, worker, storage)
    parent = os.getppid()

    def should_stop() -> str:
        """Why this worker should stop now, or ""."""
        if job.stop.is_set():
            return "stopped by Ctrl-C"
        if job.in_subprocess and os.getppid() != parent:
            return "the sweep's main process is gone"
        return ""

    s, waiting = job.plan.settings, False
    while not should_stop():
        trial = claim(study, storage, job, worker)
        if trial is None:
            break
        if trial == WAIT:  # the rest runs elsewhere; a dead worker's trial would come back
            if not waiting:
                print(f"worker {worker}: the last trials run in other workers; waiting for "
                      "them (a dead worker's trial is retried here)", file=sys.stderr)
            waiting = True
            time.sleep(WAIT_POLL)
            continue
        waiting = False
        with Heartbeat(storage, trial, s.heartbeat_interval):
            run_trial(study, trial, job, should_stop)
    if job.in_subprocess and os.getppid() != parent:  # nobody else will close the parent run
        end_parent_run(job.plan, job.parent_run_id)


WAIT = "wait"
WAIT_POLL = 1.0  # seconds between looks at the study while the last trials run elsewhere


def claim(study: optuna.Study, storage: Any, job: Job, worker: int) -> Trial | str | None:
    """Under the claim lock: fail the trials of dead workers, then a new (or retried) trial,
    WAIT while the budget is taken only by trials running elsewhere (database storage), or
    None when the budget is spent or too many trials failed."""
    s = job.plan.settings
    with job.lock, claim_lock(storage, job.plan):
        fail_stale_trials(study, storage, job.plan)
        trials = study.get_trials(deepcopy=False, states=CLAIMED)
        finished = sum(t.state in FINISHED for t in trials)
        if finished >= s.n_trials or len(failures(study, job.parent_run_id)) > s.max_failures:
            return None
        if len(trials) >= s.n_trials:
            return WAIT if heartbeats(storage) else None
        trial = study.ask()
        Heartbeat(storage, trial, s.heartbeat_interval).beat()  # alive from the first moment
        for key, value in {"pid": os.getpid(), "host": socket.gethostname(),
                           "invocation": job.parent_run_id, "worker": worker,
                           "main_pid": job.main_pid}.items():
            trial.set_user_attr(key, value)
    return trial


def run_workers(job: Job, n_workers: int) -> list[str]:
    """``n_workers`` spawned processes (TensorFlow is not fork-safe), or this process for one.
    Returns a line per worker that crashed."""
    if n_workers == 1:
        work(job, 0)
        return []
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    job.in_subprocess = True
    procs = [ctx.Process(target=work, args=(job, i), name=f"sweep-worker-{i}", daemon=False)
             for i in range(n_workers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    return [f"worker {i} (pid {p.pid}) exited with code {p.exitcode}"
            for i, p in enumerate(procs) if p.exitcode]


@contextmanager
def ctrl_c_sets(stop: Any) -> Iterator[None]:
    """The first Ctrl-C asks every worker to stop (running trials end FAILED); a second
    one raises KeyboardInterrupt at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping: running trials end as FAILED; run the same command to resume "
              "(Ctrl-C again to quit at once)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# -- one invocation -------------------------------------------------------------------------

def open_study(plan: Plan, join: bool) -> tuple[Any, optuna.Study]:
    """Check that the storage and an http tracking server answer, then create or resume the
    study (``join``: load an existing one only). Nothing is created when a check fails."""
    check_storage(plan)
    check_server(plan.tracking_uri)
    if join and "://" not in plan.storage and not Path(plan.storage).exists():
        raise ConfigError(f"sweep.study_name={plan.settings.study_name}: no study at "
                          f"{plan.storage}; start it with python -m sweep multirun")
    storage = open_storage(plan)
    study = join_study(plan, storage) if join else create_study(plan, storage)
    with claim_lock(storage, plan):
        fail_stale_trials(study, storage, plan)
    return storage, study


def run(plan: Plan, join: bool = False) -> Outcome:
    """Create or resume the study (``join``: an existing one), run what is left of
    ``sweep.n_trials``, summarize."""
    import multiprocessing as mp

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    s = plan.settings
    storage, study = open_study(plan, join)
    plan.folder.mkdir(parents=True, exist_ok=True)
    left = s.n_trials - claimed(study)
    report.resuming(study, plan, left, joining=join)
    if left <= 0:
        report.summary(study, plan)
        return Outcome(0, "nothing to do")
    n_existing = len(study.trials)
    ctx = mp.get_context("spawn")
    name = f"{s.study_name}-{datetime.now():%m%d-%H%M%S}"
    tags = {"sweep.study": s.study_name, "sweep.role": "parent",
            "sweep.storage": mask_url(plan.storage)}
    with tracked_run(plan.tracking_uri, plan.experiment, name, tags=tags) as parent:
        report.log_plan(parent, plan)
        salt = zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) \
            if "://" in plan.storage else 0  # workers on other machines sample apart
        job = Job(plan, parent.run_id, ctx.Lock(), ctx.Event(), n_existing, os.getpid(), salt)
        monitor = report.Monitor(plan, parent.run_id, lambda: optuna.load_study(
            study_name=s.study_name, storage=open_storage(plan)))
        with ctrl_c_sets(job.stop), monitor:
            crashed = run_workers(job, min(s.n_jobs, left))
        with claim_lock(storage, plan):
            fail_stale_trials(study, storage, plan)  # trials of a crashed worker
        outcome = _outcome(study, job, crashed)
        report.finish(parent, study, plan)
        if outcome.exit_code == 130:
            parent.set_tags({"stopped": "interrupted"})
            parent.end("KILLED")
        elif outcome.exit_code:
            parent.set_tags({"error": outcome.message})
            parent.end("FAILED")
    outcome.new_trials = len(study.trials) - n_existing
    return outcome


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
