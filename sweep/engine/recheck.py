"""The recheck: once the trial budget is spent, the leaders retrain on fresh seeds.

The ``sweep.recheck_top_k`` best trials each train their config on the same
``sweep.recheck_seeds`` fresh seeds (``sweep.engine.seeds.recheck_seeds``: no trial and no
``evaluate`` uses them). A task trains up to ``sweep.seeds_per_trial`` seeds of one leader
side by side, as a trial trains its seeds (one stacked session call per step); the tasks
are spread over ``sweep.n_jobs`` worker processes. Each seed's result is stored at once in
the study (a study user attr of its own: see sweep/engine/leaders.py), so a killed recheck
resumes with what is missing, and two invocations rechecking at once keep each other's
results. The winner is the leader whose delivered
agents solve the env on the largest fraction of the fresh seeds, ties broken by the
objective on those seeds; ``best``, ``reproduce best``, ``evaluate best`` and ``export``
use it.

In MLflow: a ``recheck-trial-NNN`` run per leader under the sweep's parent run, a run per
seed under it; the parent gets ``recheck_leaders.png`` (per-seed points, mean and 95%
interval) and the winner's tags.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import ExitStack
from typing import Any

import optuna

from rltrain.folders import new_folder
from rltrain.secrets import mask_url, masked_entry
from rltrain.tracking import Tracker, tracked_run
from sweep.engine import objective, processes, stats, winner
from sweep.engine.leaders import Leader, leaders, missing, store, stored_results, threshold_of
from sweep.engine.runs import end_orphans, end_unstored
from sweep.engine.settings import Plan
from sweep.engine.workers import STOPPED, ignore_stop_signals


def real_overrides(plan: Plan, lead: Leader) -> list[str]:
    """The leader's config as this invocation's overrides and the trial's sampled values. Not
    the trial's stored ``overrides``: those are masked (a password in ``tracking.uri`` is
    ``***`` there), and the recheck's runs go where this invocation's parent run is."""
    from sweep.engine.trial import trial_overrides

    params = lead.trial.params  # the study's space is this invocation's (study.check_same)
    return trial_overrides(plan, {k: params[k] for k in plan.space.dimensions if k in params})


_STOP: Any = None  # in a worker process: the invocation's Ctrl-C event


def _init_worker(stop: Any) -> None:
    global _STOP
    _STOP = stop
    ignore_stop_signals()  # the main process turns Ctrl-C and SIGTERM into `stop`


@masked_entry
def _task(plan: Plan, number: int, overrides: list[str], seeds: list[int],
          run_id: str) -> list[dict[str, Any]]:
    """Worker process: train one leader's config on some fresh seeds side by side, each
    under the leader's recheck run; returns each seed's result."""
    from rltrain.run import tracked_train_together
    from sweep.engine.trial import Guard, seed_config

    cfgs = [seed_config(overrides, seed,
                        new_folder(plan.folder / f"recheck-{number:03d}-{seed}"),  # per invocation
                        f"recheck-trial-{number:03d}-seed-{seed}") for seed in seeds]

    def should_stop() -> str:
        return STOPPED if _STOP is not None and _STOP.is_set() else ""

    shown = [mask_url(o) for o in overrides]  # what the runs store
    tags = {"sweep.study": plan.settings.study_name, "sweep.role": "recheck-seed",
            "sweep.recheck_of": number}
    done = tracked_train_together(cfgs, overrides=shown,
                                  callbacks=[[Guard(should_stop)] for _ in cfgs],
                                  tags=[tags] * len(cfgs), parent_run_id=run_id)
    return [_outcome(plan, number, cfg.seed, run, result)
            for cfg, (run, result) in zip(cfgs, done, strict=True)]


def _outcome(plan: Plan, number: int, seed: int, run: str, result: Any) -> dict[str, Any]:
    """What the study stores of one recheck seed."""
    s = plan.settings
    if s.metric == "test/mean_reward":
        score = result.test_mean_reward
    else:
        score = objective.seed_score([v for _, v in result.evaluations], s.seed_score,
                                     s.score_last_n)
    return {"number": number, "seed": seed, "run_id": run, "score": score,
            "test": result.test_mean_reward, "final_test": result.final_test_mean_reward,
            "evaluations": result.evaluations}


def run(plan: Plan, study: optuna.Study, parent: Tracker, stop: Any) -> None:
    """Run the missing recheck tasks in worker processes, storing each as it ends; then
    summarize on the parent run. Ctrl-C (``stop``) ends running tasks FAILED."""
    todo = missing(study, plan)
    if todo:
        end_orphans(plan, ("recheck", "recheck-seed"))  # left RUNNING by a killed recheck
        end_unstored(plan, {out["run_id"] for out in stored_results(study).values()})
        _run_tasks(plan, study, parent, todo, stop)
    _report(plan, study, parent)


def _run_tasks(plan: Plan, study: optuna.Study, parent: Tracker,
               todo: list[tuple[Leader, int]], stop: Any) -> None:
    s = plan.settings
    numbers = sorted({lead.trial.number for lead, _ in todo})
    groups = side_by_side(todo, s.seeds_per_trial)
    workers = min(s.n_jobs, len(groups))
    print(f"recheck: {len(todo)} runs ({len(numbers)} leader(s) x fresh seeds, up to "
          f"{s.seeds_per_trial} side by side) on {workers} worker(s)", file=sys.stderr, flush=True)
    with ExitStack() as stack:
        runs = {n: stack.enter_context(tracked_run(
            plan.tracking_uri, plan.experiment, f"recheck-trial-{n:03d}",
            parent_run_id=parent.run_id, tags={"sweep.study": s.study_name,
                                               "sweep.role": "recheck", "sweep.recheck_of": n}))
            for n in numbers}
        tasks = [(plan, lead.trial.number, real_overrides(plan, lead), seeds,
                  runs[lead.trial.number].run_id)
                 for lead, seeds in groups]
        done = 0
        for outs in _results(tasks, workers, stop):
            for out in outs:
                store(study, out)  # at once: a killed recheck resumes here
                done += 1
                print(f"  recheck trial {out['number']} seed {out['seed']}: score "
                      f"{out['score']:.1f}, test {out['test']:.1f} ({done}/{len(todo)})",
                      file=sys.stderr, flush=True)


def side_by_side(todo: list[tuple[Leader, int]], width: int) -> list[tuple[Leader, list[int]]]:
    """The (leader, seed) tasks as (leader, seeds): up to ``width`` seeds of one leader."""
    groups: dict[int, tuple[Leader, list[int]]] = {}
    for lead, seed in todo:
        groups.setdefault(lead.trial.number, (lead, []))[1].append(seed)
    return [(lead, seeds[i:i + width]) for lead, seeds in groups.values()
            for i in range(0, len(seeds), max(1, width))]


def _results(tasks: list[tuple[Any, ...]], workers: int, stop: Any
             ) -> Iterator[list[dict[str, Any]]]:
    """Each task's results as it ends: in this process for one worker when it has
    TensorFlow loaded already (its trials trained here: no second process start), else in
    ``workers`` processes from the forkserver (which has)."""
    global _STOP
    if workers == 1 and "tensorflow" in sys.modules:
        _STOP = stop
        yield from (_task(*task) for task in tasks)
        return
    context = processes.context()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                             initializer=_init_worker, initargs=(stop,)) as pool:
        futures = [pool.submit(_task, *task) for task in tasks]
        yield from (future.result() for future in as_completed(futures))


def _report(plan: Plan, study: optuna.Study, parent: Tracker) -> None:
    """Print the leaders' fresh-seed results; the plot and the winner go on the parent."""
    found = leaders(study, plan)
    if not found or missing(study, plan):
        return
    threshold = threshold_of(plan)
    best = winner.choose(study, plan)
    print(f"\nrecheck on {plan.settings.recheck_seeds} fresh seeds "
          f"(delivered agent's test; solved: >= {threshold:g}):")
    for lead in found:
        test = stats.summarize(lead.tests, threshold)
        mark = "  <- winner" if best is not None and lead.trial.number == best.trial.number else ""
        print(f"  trial {lead.trial.number:3d}  objective {lead.trial.value:6.1f}  "
              f"recheck {objective.aggregate(lead.scores, plan.settings.aggregate):6.1f}  "
              f"test {test.line()}{mark}")
    if best is not None:
        winner.record(study, plan, best, found, threshold)
        parent.set_tags({winner.KEY: best.trial.number,
                         f"{winner.KEY}_run_id": best.trial.user_attrs.get("run_id", "")})
        parent.log_metric("recheck/winner_solved", best.solved(threshold), 0)
        parent.log_metric("recheck/winner_solved_fraction", best.solved_fraction(threshold), 0)
    from rltrain.plots import leaders_plot

    path = leaders_plot({f"trial {lead.trial.number}": lead.tests for lead in found},
                        plan.folder / "plots" / "recheck_leaders.png", threshold)
    parent.log_artifact(path, "plots")

