"""The MLflow side of a sweep's trials: tag, end and clean up their runs.

Every call here is best effort: a tracking store that fails (after the tracker's own
retries) costs a warning, never a trial or a worker. Nothing here runs under the claim lock.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

from optuna.trial import TrialState

from rltrain.config import mask_url
from rltrain.tracking import RunNotFound, find_runs, stored_run, tracker_for
from sweep.engine.settings import Plan
from sweep.engine.storage import Stale, same_process


def tag_trial_runs(plan: Plan, number: int, state: str, invocation: str, end: bool = False,
                   reason: str = "") -> None:
    """Set ``sweep.state`` (and ``error``: ``reason``) on the trial's MLflow runs (the trial's
    and its seeds'); ``end``: also close the ones still RUNNING as FAILED."""
    if not invocation:
        return
    try:
        tags = {"sweep.study": plan.settings.study_name, "sweep.trial": number,
                "sweep.invocation": invocation}
        for run_id in find_runs(plan.tracking_uri, plan.experiment, tags,
                                status="RUNNING" if end else None):
            tracker = tracker_for(plan.tracking_uri, run_id)
            tracker.set_tags({"sweep.state": state, **({"error": reason} if reason else {})})
            if end:
                tracker.end("FAILED")
    except Exception as err:  # the tracking store is not worth losing the trial for
        print(f"warning: could not tag trial {number}'s MLflow run: {mask_url(str(err))[:300]}",
              file=sys.stderr)


def end_parent_run(plan: Plan, invocation: str) -> None:
    """End a sweep's parent run KILLED when its process is gone (warn if the store fails)."""
    try:
        tracker = tracker_for(plan.tracking_uri, invocation)
        tracker.set_tags({"stopped": "its sweep process is gone"})
        tracker.end("KILLED")
    except Exception as err:
        print(f"warning: could not end parent run {invocation}: {mask_url(str(err))[:300]}",
              file=sys.stderr)


def end_stale(plan: Plan, stale: list[Stale]) -> None:
    """End the runs of trials whose worker is gone: theirs FAILED, their sweep's KILLED."""
    for item in stale:
        tag_trial_runs(plan, item.number, "FAIL", item.invocation, end=True, reason=item.reason)
        if item.sweep_gone:
            end_parent_run(plan, item.invocation)


ENDS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED", TrialState.FAIL: "FAILED"}


def end_runs_of_finished_trials(plan: Plan, study: Any) -> None:
    """End the runs left RUNNING of trials the study has finished: their own end was lost
    to a tracking server that did not answer for ``SWEEP_TRACKING_WAIT`` seconds. A run is
    matched by its trial number and its invocation (the trial's parent run), so another
    study of the same name elsewhere is never touched. Ends as the trial did: FINISHED,
    KILLED (pruned) or FAILED; warns if the store fails again."""
    try:
        trials = {(t.number, t.user_attrs.get("invocation", "")): t
                  for t in study.get_trials(deepcopy=False, states=tuple(ENDS))}
        left = find_runs(plan.tracking_uri, plan.experiment,
                         {"sweep.study": plan.settings.study_name}, status="RUNNING",
                         with_tags=True)
        for run_id, tags in left:
            if "sweep.trial" not in tags:
                continue
            trial = trials.get((int(tags["sweep.trial"]), tags.get("sweep.invocation", "")))
            if trial is None:
                continue
            tracker = tracker_for(plan.tracking_uri, run_id)
            tracker.set_tags({"sweep.state": trial.state.name, "ended_by": "a later check: "
                              "the tracking server was down when the trial ended"})
            tracker.end(ENDS[trial.state])
    except Exception as err:
        print(f"warning: could not end trials' runs left running: {mask_url(str(err))[:300]}",
              file=sys.stderr)


def end_orphans(plan: Plan, roles: tuple[str, ...]) -> None:
    """End FAILED the study's runs with one of ``roles`` left RUNNING by a killed process
    (e.g. a recheck's runs, which no trial state tracks): those whose parent run has ended
    (a killed sweep's parent run is ended by :func:`end_dead_parents`; give ``roles``
    parents first). Runs under a RUNNING parent belong to an invocation at work."""
    for role in roles:
        _end_left(plan, role, "RUNNING", set(), {"error": "its process is gone (killed)"},
                  "FAILED", "could not end runs left running")


def end_unstored(plan: Plan, stored: set[str]) -> None:
    """End KILLED, tagged ``sweep.superseded``, the recheck's seed runs that FINISHED
    without their result reaching the study (the sweep was killed in between): their seeds
    train again, and the FINISHED recheck runs stay the results the winner comes from.
    Runs under a RUNNING parent belong to an invocation at work (it stores them next)."""
    _end_left(plan, "recheck-seed", "FINISHED", stored,
              {"sweep.superseded": "the recheck was killed before its result was stored; "
                                   "the seed trained again"},
              "KILLED", "could not end superseded recheck runs")


def _end_left(plan: Plan, role: str, status: str, keep: set[str], tags: dict[str, str],
              end: str, warning: str) -> None:
    """End ``end``, with ``tags``, the study's runs of ``role`` in ``status`` that are not in
    ``keep`` and whose parent run is not RUNNING; a store that fails costs a warning."""
    try:
        for run_id, run_tags in find_runs(plan.tracking_uri, plan.experiment,
                                          {"sweep.study": plan.settings.study_name,
                                           "sweep.role": role}, status=status, with_tags=True):
            if run_id in keep or _running(plan, run_tags.get("mlflow.parentRunId", "")):
                continue
            tracker = tracker_for(plan.tracking_uri, run_id)
            tracker.set_tags(tags)
            tracker.end(end)
    except Exception as err:
        print(f"warning: {warning}: {mask_url(str(err))[:300]}", file=sys.stderr)


def _running(plan: Plan, run_id: str) -> bool:
    """The run exists and is RUNNING."""
    try:
        return bool(run_id) and stored_run(plan.tracking_uri, run_id).status == "RUNNING"
    except RunNotFound:
        return False


def end_dead_parents(plan: Plan) -> None:
    """End KILLED the study's parent runs left RUNNING by a sweep process of this host that
    is gone (killed between its trials, e.g. during the recheck): judged by its pid and
    start time, so a reused pid does not keep a run RUNNING."""
    try:
        tags = {"sweep.study": plan.settings.study_name, "sweep.role": "parent",
                "sweep.host": socket.gethostname()}
        client_runs = find_runs(plan.tracking_uri, plan.experiment, tags, status="RUNNING",
                                with_tags=True)
        for run_id, run_tags in client_runs:
            pid = int(run_tags.get("sweep.pid", "0") or 0)
            if pid and not same_process(pid, run_tags.get("sweep.process", "")):
                end_parent_run(plan, run_id)  # gone, or its pid is another process's now
    except Exception as err:
        print(f"warning: could not end parent runs left running: {mask_url(str(err))[:300]}",
              file=sys.stderr)
