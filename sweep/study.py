"""The Optuna study: create or load it, run trials in worker processes, track them in MLflow.

    python -m sweep multirun sweep.n_trials=40 'agent.lr=tag(log,interval(1e-4,1e-2))'

One invocation is one MLflow parent run; each trial is a nested child run trained by
``rltrain.run.tracked_train`` from a config Hydra composes out of the base config, the
fixed overrides and the sampled values. Each greedy evaluation is reported to the trial,
and the pruner may stop it there. The study lives in a storage (by default a journal file
in ``multirun/<study>/``), so running the same command again resumes it.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from omegaconf import DictConfig
from optuna.trial import Trial, TrialState

from rltrain.config import ConfigError, compose_config, mask_url, validate
from rltrain.loop import StopTraining
from rltrain.tracking import find_runs, tracked_run, tracker_for
from sweep import report
from sweep import space as space_
from sweep.settings import Plan, SweepSettings, plan

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
    in_subprocess: bool = False


@dataclass
class Outcome:
    """How an invocation ended: exit code 0 (done), 1 (failures, worker crash), 130 (Ctrl-C)."""

    exit_code: int
    message: str
    parent_run_id: str = ""
    new_trials: int = 0


# -- storage, sampler, pruner --------------------------------------------------------------

def open_storage(plan: Plan) -> Any:
    """A JournalStorage for a ``.log``/``.journal`` file, else the URL (Optuna's RDB)."""
    if "://" in plan.storage:
        return plan.storage
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    Path(plan.storage).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(plan.storage))


def sampler_seed(s: SweepSettings, n_existing: int, worker: int) -> int:
    """Distinct per worker and per resume (else both replay the same random start-up trials)."""
    return int(np.random.SeedSequence([s.seed, n_existing, worker]).generate_state(1)[0])


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


def create_study(plan: Plan) -> optuna.Study:
    """Create the study, or load it when it exists (the same command resumes it)."""
    s = plan.settings
    try:
        study = optuna.create_study(storage=open_storage(plan), study_name=s.study_name,
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
        study.set_user_attr("fixed", plan.fixed)
    return study


def load_study(job: Job, worker: int) -> optuna.Study:
    s = job.plan.settings
    return optuna.load_study(study_name=s.study_name, storage=open_storage(job.plan),
                             sampler=make_sampler(s, sampler_seed(s, job.n_existing, worker)),
                             pruner=make_pruner(job.plan))


def claimed(study: optuna.Study) -> int:
    """Finished and running trials: ``sweep.n_trials`` is a total over every invocation."""
    return len(study.get_trials(deepcopy=False, states=CLAIMED))


def failures(study: optuna.Study, invocation: str) -> list[optuna.trial.FrozenTrial]:
    """The failed trials of one invocation (``sweep.max_failures`` counts these)."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if t.user_attrs.get("invocation") == invocation]


def fail_stale_trials(study: optuna.Study, plan: Plan) -> None:
    """RUNNING trials whose worker process on this host is gone (killed) become FAILED;
    the parent run of a sweep whose main process is gone ends KILLED."""
    host = socket.gethostname()
    orphans = set()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid, invocation = t.user_attrs.get("pid"), t.user_attrs.get("invocation", "")
        if t.user_attrs.get("host") != host or not pid or _alive(pid):
            continue
        Trial(study, t._trial_id).set_user_attr("error", f"stale: worker process {pid} is gone")
        study.tell(t.number, state=TrialState.FAIL)
        _tag_runs(plan, t.number, "FAIL", invocation, end=True)
        if not _alive(t.user_attrs.get("main_pid", pid)):
            orphans.add(invocation)
    for run_id in orphans - {""}:
        tracker = tracker_for(plan.tracking_uri, run_id)
        tracker.set_tags({"stopped": "its sweep process is gone"})
        tracker.end("KILLED")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    try:
        values = space_.suggest(trial, plan.space)
        overrides = trial_overrides(plan, trial.number, values)
        trial.set_user_attr("overrides", overrides)
        tags = {"sweep.study": plan.settings.study_name, "sweep.trial": trial.number,
                "sweep.state": "RUNNING", "sweep.invocation": job.parent_run_id,
                **{f"sampled.{k}": v for k, v in values.items()}}
        cfg = trial_config(plan, trial.number, overrides, tags, job.parent_run_id)
        callback = TrialCallback(trial, cfg.train.eval_interval, cfg.train.nb_steps,
                                 should_stop)
        run_id, result = tracked_train(cfg, overrides=overrides, callbacks=[callback],
                                       tags=tags, parent_run_id=job.parent_run_id,
                                       folder=Path(cfg.output_dir))
    except BaseException as err:
        _fail(study, trial, job, err)
        if isinstance(err, Exception | Interrupted):
            return TrialState.FAIL
        raise
    trial.set_user_attr("run_id", run_id)
    trial.set_user_attr("nb_steps", result.nb_steps)
    trial.set_user_attr("train_seconds", round(result.train_seconds, 2))
    if result.test_rewards:
        trial.set_user_attr("test_mean_reward", result.test_mean_reward)
    return _tell(study, trial, job, run_id, cfg, result)


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
        trial.set_user_attr("error", reason)
        study.tell(trial, state=TrialState.FAIL)
    finally:
        _tag_runs(job.plan, trial.number, "FAIL", job.parent_run_id)


def _tag_runs(plan: Plan, number: int, state: str, invocation: str, end: bool = False) -> None:
    """Set ``sweep.state`` on the trial's MLflow run(s); ``end``: also close them FAILED."""
    if not invocation:
        return
    try:
        tags = {"sweep.study": plan.settings.study_name, "sweep.trial": number,
                "sweep.invocation": invocation}
        for run_id in find_runs(plan.tracking_uri, plan.experiment, tags):
            tracker = tracker_for(plan.tracking_uri, run_id)
            tracker.set_tags({"sweep.state": state})
            if end:
                tracker.end("FAILED")
    except Exception as err:  # the tracking store is not worth losing the trial for
        print(f"warning: could not tag trial {number}'s MLflow run: {err}", file=sys.stderr)


# -- workers --------------------------------------------------------------------------------

def work(job: Job, worker: int) -> None:
    """One worker: claim a trial (atomically with the budget check), train it, repeat."""
    if job.in_subprocess:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into job.stop
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study = load_study(job, worker)
    parent = os.getppid()

    def should_stop() -> str:
        """Why this worker should stop now, or ""."""
        if job.stop.is_set():
            return "stopped by Ctrl-C"
        if job.in_subprocess and os.getppid() != parent:
            return "the sweep's main process is gone"
        return ""

    s = job.plan.settings
    while not should_stop():
        with job.lock:
            if claimed(study) >= s.n_trials or \
                    len(failures(study, job.parent_run_id)) > s.max_failures:
                return
            trial = study.ask()
            trial.set_user_attr("pid", os.getpid())
            trial.set_user_attr("host", socket.gethostname())
            trial.set_user_attr("invocation", job.parent_run_id)
            trial.set_user_attr("worker", worker)
            trial.set_user_attr("main_pid", job.main_pid)
        run_trial(study, trial, job, should_stop)
    if job.in_subprocess and os.getppid() != parent:  # nobody else will close the parent run
        tracker = tracker_for(job.plan.tracking_uri, job.parent_run_id)
        tracker.set_tags({"stopped": "its sweep process is gone"})
        tracker.end("KILLED")


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

def run(plan: Plan) -> Outcome:
    """Create or resume the study, run what is left of ``sweep.n_trials``, summarize."""
    import multiprocessing as mp

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    s = plan.settings
    plan.folder.mkdir(parents=True, exist_ok=True)
    study = create_study(plan)
    fail_stale_trials(study, plan)
    left = s.n_trials - claimed(study)
    report.resuming(study, plan, left)
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
        job = Job(plan, parent.run_id, ctx.Lock(), ctx.Event(), n_existing, os.getpid())
        monitor = report.Monitor(plan, parent.run_id, lambda: optuna.load_study(
            study_name=s.study_name, storage=open_storage(plan)))
        with ctrl_c_sets(job.stop), monitor:
            crashed = run_workers(job, min(s.n_jobs, left))
        fail_stale_trials(study, plan)  # trials of a crashed worker
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


def cmd_multirun(args: list[str]) -> int:
    """``python -m sweep multirun [overrides]``: create or resume a study and run its trials."""
    outcome = run(plan(args))
    if outcome.exit_code:
        print(f"error: {outcome.message}" if outcome.exit_code != 130 else outcome.message,
              file=sys.stderr)
    return outcome.exit_code
