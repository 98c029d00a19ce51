"""One trial: sample a config, train it on ``sweep.seeds_per_trial`` seeds, score, tell.

The seeds train side by side in this worker (``rltrain.train.train_together``): after each
round of evaluations the seeds' aggregate score goes to ``trial.report``, and the pruner
(median, hyperband, threshold) may stop them all there. With ``sweep.pruner=wilcoxon``
the seeds train one after another instead, each seed's score reported as one instance.

In MLflow the trial is a run under the sweep's parent run, carrying the aggregate curve
(``eval/mean_reward``: the seeds' mean at each evaluation; ``objective``: the trial's value
so far); each seed is a run nested under it.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from omegaconf import DictConfig
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import Trial, TrialState

from rltrain.config import compose_config, flatten, mask_url, validate
from rltrain.folders import new_folder
from rltrain.loop import StopTraining
from rltrain.tracking import Tracker, tracked_run, tracker_for
from sweep.engine import objective, seeds
from sweep.engine import space as space_
from sweep.engine.runs import tag_trial_runs
from sweep.engine.settings import Plan

STOP_CHECK_STEPS = 256  # how often a running seed looks for Ctrl-C


class Interrupted(KeyboardInterrupt):
    """Ctrl-C reached a running trial: it ends FAILED and the worker stops."""


@dataclass
class Context:
    """What a trial needs from its worker: the plan, the parent run, how to stop."""

    plan: Plan
    parent_run_id: str
    should_stop: Callable[[], str]


def run_name(number: int) -> str:
    return f"trial-{number:03d}"


def trial_overrides(plan: Plan, values: dict[str, Any]) -> list[str]:
    """The trial's config as overrides (fixed, then sampled), without its seeds."""
    return [*(f for f in plan.fixed if not f.startswith("seed=")), *space_.overrides(values)]


def seeds_of(plan: Plan, number: int) -> list[int]:
    """The trial's seeds: derived from ``sweep.seed`` and the trial number; with a fixed
    ``seed=N``, N, N+1, ... for every trial (the same seeds for every config)."""
    k = plan.settings.seeds_per_trial
    if plan.seed_fixed:
        first = int(plan.space.fixed["seed"].split("=", 1)[1])
        return [first + j for j in range(k)]
    return seeds.trial_seeds(plan.settings.seed, number, k)


def seed_config(overrides: list[str], seed: int, folder: Path, name: str) -> DictConfig:
    """Compose and validate the config of one seed (ConfigError if bad): its run is named
    ``name``, its files go to ``folder``."""
    internal = ["train.progress=false", f"tracking.run_name={name}",
                f"output_dir={space_.format_value(str(folder.resolve()))}", f"seed={seed}"]
    cfg = compose_config([*overrides, *internal])
    validate(cfg)
    return cfg


class Guard:
    """Per seed: fails the trial when the loss turns NaN, stops it on Ctrl-C."""

    def __init__(self, should_stop: Callable[[], str]) -> None:
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


class _Tap:
    """Collects one seed's evaluations for the Scorer."""

    def __init__(self, into: list[tuple[int, float]]) -> None:
        self.into = into

    def on_evaluation_end(self, step: int, logs: dict[str, Any]) -> None:
        self.into.append((step, float(logs["mean_reward"])))


class Scorer:
    """The trial's value from its seeds' evaluations; reports it after each round of
    evaluations (the pruner may stop the seeds there) and logs the aggregate curve."""

    def __init__(self, trial: Trial, ctx: Context, k: int, tracker: Tracker,
                 eval_interval: int, nb_steps: int) -> None:
        self.trial, self.ctx, self.tracker = trial, ctx, tracker
        self.interval, self.nb_steps = eval_interval, nb_steps
        self.evaluations: list[list[tuple[int, float]]] = [[] for _ in range(k)]

    def taps(self) -> list[_Tap]:
        return [_Tap(into) for into in self.evaluations]

    def seed_scores(self) -> list[float]:
        s = self.ctx.plan.settings
        return [objective.seed_score([r for _, r in e], s.seed_score, s.score_last_n)
                for e in self.evaluations]

    def value(self) -> float:
        return objective.aggregate(self.seed_scores(), self.ctx.plan.settings.aggregate)

    def nominal_step(self) -> int:
        """Evaluations run at the first episode end after each interval; they are reported
        at the nominal step (2000, 4000 ...) so the pruner compares trials step for step."""
        step = min(e[-1][0] for e in self.evaluations if e)
        return step if step >= self.nb_steps else step // self.interval * self.interval

    def after_round(self, round_: int) -> None:
        at = self.nominal_step()
        value = self.value()
        latest = [e[-1][1] for e in self.evaluations if e]
        self.tracker.log_metric("eval/mean_reward", float(np.mean(latest)), at)
        self.tracker.log_metric("objective", value, at)
        self.tracker.flush()
        if math.isfinite(value):
            self.trial.report(value, at)
            if self.trial.should_prune():
                raise StopTraining("pruned")
        if why := self.ctx.should_stop():
            raise Interrupted(why)


def run_trial(study: optuna.Study, trial: Trial, ctx: Context) -> TrialState:
    """Sample, compose, train the seeds and tell. Any exception ends the trial FAILED; a
    real KeyboardInterrupt is re-raised after that."""
    plan = ctx.plan
    retry_of = trial.user_attrs.get("retry_of")  # a dead worker's trial again: same seeds
    tags: dict[str, Any] = {"sweep.study": plan.settings.study_name, "sweep.trial": trial.number,
                            "sweep.state": "RUNNING", "sweep.invocation": ctx.parent_run_id,
                            **({} if retry_of is None else {"sweep.retry_of": retry_of})}
    try:
        values = space_.suggest(trial, plan.space)
        tags.update({f"sampled.{k}": v for k, v in values.items()})
        overrides = trial_overrides(plan, values)
        shown = [mask_url(o) for o in overrides]  # what is stored, logged and printed
        trial.set_user_attr("overrides", shown)
        trial_seeds = seeds_of(plan, trial.number if retry_of is None else retry_of)
        trial.set_user_attr("seeds", trial_seeds)
        with tracked_run(plan.tracking_uri, plan.experiment, run_name(trial.number), tags=tags,
                         parent_run_id=ctx.parent_run_id) as tracker:
            # its own folder, even as a retry: the original worker may still be writing
            folder = new_folder(plan.folder / run_name(trial.number))
            cfgs = [seed_config(overrides, s, folder / f"seed-{s}",
                                f"{run_name(trial.number)}-seed-{s}") for s in trial_seeds]
            trial.set_user_attr("trial_run_id", tracker.run_id)
            _log_trial_params(tracker, cfgs[0], trial_seeds)
            scorer = Scorer(trial, ctx, len(cfgs), tracker, cfgs[0].train.eval_interval,
                            cfgs[0].train.nb_steps)
            outs = _train_seeds(trial, ctx, cfgs, shown, tags, tracker, scorer)
            state = _tell(study, trial, ctx, tracker, cfgs[0], scorer, outs)
            for run in (tracker, *(tracker_for(plan.tracking_uri, run_id) for run_id, _ in outs)):
                run.set_tags({"sweep.state": state.name})  # the trial's and its seeds' runs
            if state == TrialState.PRUNED:
                tracker.set_tags({"stopped": "pruned"})
                tracker.end("KILLED")
            elif state == TrialState.FAIL:  # trained, but no finite value to tell
                tracker.set_tags({"error": trial.user_attrs.get("error", "")})
                tracker.end("FAILED")
            return state
    except UpdateFinishedTrialError:  # failed meanwhile by a worker that heard no heartbeat
        print(f"warning: trial {trial.number} was failed by another worker (no heartbeat for "
              f"{plan.settings.grace_period} s); its result is dropped", file=sys.stderr)
        tag_trial_runs(plan, trial.number, "FAIL", ctx.parent_run_id)
        return TrialState.FAIL
    except BaseException as err:
        _fail(study, trial, ctx, err)
        if isinstance(err, Exception | Interrupted):
            return TrialState.FAIL
        raise


def _log_trial_params(tracker: Tracker, cfg: DictConfig, trial_seeds: list[int]) -> None:
    """The config the trial's seeds share, and the seeds."""
    params = {k: v for k, v in flatten(cfg).items()
              if k not in ("seed", "output_dir", "tracking.run_name")}
    params["seeds"] = " ".join(map(str, trial_seeds))
    tracker.log_params(params)


def _train_seeds(trial: Trial, ctx: Context, cfgs: list[DictConfig], shown: list[str],
                 tags: dict[str, Any], tracker: Tracker,
                 scorer: Scorer) -> list[tuple[str, Any]]:
    """Train the seeds (side by side, or one after another for the Wilcoxon pruner);
    returns ``(run_id, TrainResult)`` of each seed that trained."""
    from rltrain.run import tracked_train, tracked_train_together

    seed_tags = [{**tags, "sweep.seed": cfg.seed, "sweep.role": "seed"} for cfg in cfgs]
    taps = scorer.taps()
    if ctx.plan.settings.pruner != "wilcoxon":
        return tracked_train_together(
            cfgs, overrides=shown, callbacks=[[Guard(ctx.should_stop), tap] for tap in taps],
            tags=seed_tags, parent_run_id=tracker.run_id, after_round=scorer.after_round)
    outs = []
    for j, (cfg, tap, tag) in enumerate(zip(cfgs, taps, seed_tags, strict=True)):
        outs.append(tracked_train(cfg, overrides=shown, callbacks=[Guard(ctx.should_stop), tap],
                                  tags=tag, parent_run_id=tracker.run_id,
                                  folder=Path(cfg.output_dir)))
        score = _seed_value(ctx.plan, scorer, j, outs[-1][1])
        if math.isfinite(score):
            trial.report(score, j)
        if j + 1 < len(cfgs) and trial.should_prune():
            outs[-1][1].stopped = "pruned"
            break
        if why := ctx.should_stop():
            raise Interrupted(why)
    return outs


def _seed_value(plan: Plan, scorer: Scorer, j: int, result: Any) -> float:
    """Seed ``j``'s score: from its evaluations, or its final test."""
    if plan.settings.metric == "test/mean_reward":
        return result.test_mean_reward
    return scorer.seed_scores()[j]


def _tell(study: optuna.Study, trial: Trial, ctx: Context, tracker: Tracker, cfg: DictConfig,
          scorer: Scorer, outs: list[tuple[str, Any]]) -> TrialState:
    """Record what the seeds gave, plot their curves, tell Optuna the trial's state."""
    from rltrain.plots import seed_curves

    plan = ctx.plan
    results = [r for _, r in outs]
    trial.set_user_attr("run_id", outs[0][0])  # a seed's run: what reproduce retrains
    trial.set_user_attr("seed_run_ids", [run_id for run_id, _ in outs])
    trial.set_user_attr("nb_steps", sum(r.nb_steps for r in results))
    trial.set_user_attr("train_seconds", round(sum(r.train_seconds for r in results), 2))
    scores = [_seed_value(plan, scorer, j, r) for j, r in enumerate(results)]
    trial.set_user_attr("seed_scores", [round(v, 3) for v in scores])
    tests = [r.test_mean_reward for r in results if r.test_rewards]
    if tests:
        trial.set_user_attr("test_mean_reward", float(np.mean(tests)))
        tracker.log_metric("test/mean_reward", float(np.mean(tests)), results[0].nb_steps)
    curves = [e for e in scorer.evaluations if e]
    if curves:
        folder = Path(cfg.output_dir).parent
        tracker.log_artifact(seed_curves(curves, folder / "seed_curves.png",
                                         title=f"{run_name(trial.number)}: seeds' evaluations"))
    if any(r.stopped == "pruned" for r in results):
        study.tell(trial, state=TrialState.PRUNED)
        return TrialState.PRUNED
    value = objective.aggregate(scores, plan.settings.aggregate)
    if not math.isfinite(value):
        trial.set_user_attr("error", f"{plan.settings.metric} is {value}")
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL
    tracker.log_metric("objective", value, results[0].nb_steps)
    study.tell(trial, value)
    return TrialState.COMPLETE


def _fail(study: optuna.Study, trial: Trial, ctx: Context, err: BaseException) -> None:
    reason = mask_url(f"{type(err).__name__}: {err}")[:2000]
    try:
        with contextlib.suppress(UpdateFinishedTrialError):  # already failed by another worker
            trial.set_user_attr("error", reason)
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    finally:
        tag_trial_runs(ctx.plan, trial.number, "FAIL", ctx.parent_run_id)

