"""Races and silently ignored settings: folders, retried trials, concurrent rechecks, reused
pids, a searched or recorded ``train.threads`` (real stores, no training unless said)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from rltrain.run import output_dir
from sweep.engine import invocation, leaders, recheck
from sweep.engine import space as space_
from sweep.engine import study as study_
from sweep.engine import winner as winner_
from sweep.engine.settings import plan
from sweep.engine.storage import open_storage
from sweep.engine.trial import seeds_of
from sweep.present import report
from tests.conftest import run_cli
from tests.test_sweep import TINY as SWEEP
from tests.test_sweep import load


def test_runs_started_in_the_same_second_get_their_own_folders(tiny, workdir: Path) -> None:
    """Eight runs asking for an output folder at once (as ``evaluate``'s seeds do) each get
    a new, existing folder of their own."""
    cfg, barrier, got = tiny(), threading.Barrier(8), []

    def ask() -> None:
        barrier.wait()
        got.append(output_dir(cfg, root=workdir / "outputs"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 8 and all(p.is_dir() for p in got)
    assert output_dir(cfg, root=workdir / "outputs") not in got  # a later one too


def test_a_retried_trial_trains_in_its_own_folder(tracking_uri: str, client: MlflowClient,
                                                  workdir: Path) -> None:
    """A trial whose worker looks gone is retried with the same parameters and seeds, but
    its seeds train in the retry's own folder: the original worker may still be writing in
    its folder (a heartbeat lost to the network, a pid the journal no longer recognises)."""
    p = plan([*SWEEP, f"tracking.uri={tracking_uri}", "sweep.n_trials=1", "sweep.max_retry=1"])
    study = study_.create_study(p, open_storage(p))
    gone = study.ask()
    space_.suggest(gone, p.space)
    for key, value in {"pid": os.getpid(), "host": socket.gethostname(),
                       "process": "boot:1"}.items():  # its pid is another process's now
        gone.set_user_attr(key, value)
    (first,) = seeds_of(p, gone.number)
    original = p.folder / "trial-000" / f"seed-{first}"
    original.mkdir(parents=True)
    (original / "dqn_log.json").write_text("the original worker's")

    outcome = invocation.run(p, report)
    assert outcome.exit_code == 0, outcome.message
    retry = load().trials[1]
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["retry_of"] == 0
    assert retry.params == gone.params and retry.user_attrs["seeds"] == [first]
    seed_run = client.get_run(retry.user_attrs["run_id"])
    assert Path(seed_run.data.tags["output_dir"]) == (
        p.folder / "trial-001" / f"seed-{first}").resolve()
    assert seed_run.info.run_name == f"trial-001-seed-{first}"
    assert (original / "dqn_log.json").read_text() == "the original worker's"
    assert sorted(q.name for q in original.iterdir()) == ["dqn_log.json"]


def _store_seeds(name: str, first: int, n: int, barrier: Any) -> None:
    """One recheck invocation (a process of its own) storing results as its tasks end."""
    p = plan([f"sweep.study_name={name}"])
    study = optuna.load_study(study_name=name, storage=open_storage(p))
    barrier.wait()
    for seed in range(first, first + n):
        leaders.store(study, {"number": 0, "seed": seed, "run_id": f"run-{seed}",
                              "score": 1.0, "test": 1.0, "final_test": 1.0})


def test_rechecks_at_once_keep_each_other_s_results(workdir: Path) -> None:
    """Two invocations rechecking one study at once: every result either stores is kept."""
    import multiprocessing as mp

    p = plan(["sweep.study_name=twice"])
    study_.create_study(p, open_storage(p))
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_store_seeds, args=("twice", first, 15, barrier))
             for first in (0, 100)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0]
    got = leaders.stored_results(load("twice"))
    assert sorted(got) == [(0, s) for s in [*range(15), *range(100, 115)]]
    assert got[(0, 107)]["run_id"] == "run-107"


def _complete(study: optuna.Study, value: float) -> int:
    trial = study.ask()
    trial.set_user_attr("run_id", f"run-of-{trial.number}")
    study.tell(trial, value)
    return trial.number


def _rechecked(study: optuna.Study, number: int, seeds: list[int], tests: list[float]) -> None:
    for seed, test in zip(seeds, tests, strict=True):
        leaders.store(study, {"number": number, "seed": seed, "run_id": f"{number}-{seed}",
                              "score": test, "test": test, "final_test": test})


RECHECKED = ["sweep.study_name=ranked", "sweep.n_trials=2", "sweep.recheck_top_k=2",
             "sweep.recheck_seeds=2", "sweep.n_jobs=1", "sweep.max_failures=0",
             "agent.policy.value_max=0.5"]


def test_the_winner_counts_only_this_recheck_s_seeds(workdir: Path) -> None:
    """Results on the fresh seeds of another ``sweep.seed``/``sweep.recheck_seeds`` stay
    stored but do not count: the winner solves the largest fraction of the current ones."""
    from sweep.engine.seeds import recheck_seeds

    p = plan(RECHECKED)
    study = study_.create_study(p, open_storage(p))
    a, b = _complete(study, 10.0), _complete(study, 5.0)
    now, before = recheck_seeds(0, 2), recheck_seeds(1, 4)  # this line's, an earlier one's
    study.set_user_attr(leaders.KEY, {  # a solved every seed of an earlier recheck, stored
        f"{a}/{s}": {"run_id": "", "score": 500.0, "test": 500.0, "final_test": 500.0}
        for s in before})                 # as studies from before kept them (one attr)
    _rechecked(study, a, now, [500.0, 0.0])
    _rechecked(study, b, now, [500.0, 480.0])
    assert {(a, s) for s in before} < set(leaders.stored_results(study))  # still read
    assert not leaders.missing(study, p)
    assert [sorted(lead.results) for lead in leaders.leaders(study, p)] == [now, now]
    assert winner_.choose(study, p).trial.number == b


def _won(workdir: Path, tracking_uri: str) -> tuple[optuna.Study, int, int]:
    """A study of two trials whose recheck has completed: b wins it, a has the best value."""
    from rltrain.tracking import tracked_run
    from sweep.engine.seeds import recheck_seeds

    p = plan([*RECHECKED, f"tracking.uri={tracking_uri}"])
    study = study_.create_study(p, open_storage(p))
    a, b = _complete(study, 10.0), _complete(study, 5.0)
    _rechecked(study, a, recheck_seeds(0, 2), [500.0, 0.0])
    _rechecked(study, b, recheck_seeds(0, 2), [500.0, 480.0])
    with tracked_run(tracking_uri, "recheck-test", "parent") as parent:
        recheck.run(p, study, parent, threading.Event())  # nothing missing: it only decides
    assert winner_.trial_of(load("ranked")).number == b
    return study, a, b


def test_a_stored_winner_falls_when_better_trials_are_not_rechecked(
        workdir: Path, tracking_uri: str) -> None:
    study, a, b = _won(workdir, tracking_uri)
    c = _complete(study, 20.0)  # more trials (a raised budget): c and a lead, not rechecked
    p = plan([*RECHECKED, "sweep.n_trials=3", f"tracking.uri={tracking_uri}"])
    assert [lead.trial.number for lead in leaders.leaders(study, p)] == [c, a]
    assert winner_.trial_of(load("ranked")).number == c  # the best objective, until then
    assert winner_.named_by(["sweep.study_name=ranked"]).trial == c


def test_a_raised_budget_drops_the_winner_until_its_recheck_completes(
        workdir: Path, tracking_uri: str) -> None:
    """``sweep.n_trials`` 2 -> 3; the new trial fails (the sweep stops there): the recheck
    of the new budget has not run, so the winner of the old one is not the study's."""
    study, a, b = _won(workdir, tracking_uri)
    study.enqueue_trial({"agent.policy.value_min": 0.9})  # > value_max: fails at once
    outcome = invocation.run(plan([*RECHECKED, "sweep.n_trials=3",
                                   f"tracking.uri={tracking_uri}"]), report)
    assert outcome.exit_code == 1 and "1 trials failed" in outcome.message
    assert winner_.named_by(["sweep.study_name=ranked"]).trial == a


def test_multirun_refuses_to_search_train_threads(workdir: Path) -> None:
    """TensorFlow sizes its thread pools once per process: a worker's second trial would
    silently keep the first one's ``train.threads``. Refused in one line, before any work."""
    proc = run_cli("multirun", *SWEEP, "train.threads=choice(1,2)", "sweep.n_trials=2",
                   cwd=workdir, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: train.threads=choice(1,2): train.threads cannot differ between trials "
        "(TensorFlow sets its thread pools once per worker process); fix it: train.threads=N")
    assert not (workdir / "multirun").exists()


def test_a_parent_run_whose_pid_was_reused_is_ended(tracking_uri: str, client: MlflowClient,
                                                    workdir: Path) -> None:
    """A sweep's parent run left RUNNING is judged by its process's pid and start time: a
    live pid that belongs to another process now does not keep it RUNNING."""
    from sweep.engine.runs import end_dead_parents
    from sweep.engine.storage import process_identity

    p = plan([*SWEEP, f"tracking.uri={tracking_uri}"])
    experiment = client.create_experiment(p.experiment)
    ids = {}
    for name, process in (("alive", process_identity(os.getpid())), ("reused", "boot:1")):
        tags = {"sweep.study": p.settings.study_name, "sweep.role": "parent",
                "sweep.host": socket.gethostname(), "sweep.pid": str(os.getpid()),
                "sweep.process": process}
        ids[name] = client.create_run(experiment, tags=tags, run_name=name).info.run_id
    end_dead_parents(p)
    assert client.get_run(ids["alive"]).info.status == "RUNNING"
    assert client.get_run(ids["reused"]).info.status == "KILLED"


def test_a_trial_without_a_finite_value_ends_its_run_failed(tracking_uri: str,
                                                            client: MlflowClient,
                                                            workdir: Path) -> None:
    """A trial that trains but scores NaN (here: no evaluation to score) is FAILED in the
    study, and its MLflow run ends FAILED with the reason, not FINISHED."""
    p = plan([*SWEEP, f"tracking.uri={tracking_uri}", "sweep.n_trials=1", "sweep.pruner=none",
              "train.eval_interval=choice(0,100)", "sweep.max_failures=0"])
    study = study_.create_study(p, open_storage(p))
    study.enqueue_trial({"train.eval_interval": 0})
    outcome = invocation.run(p, report)
    assert outcome.exit_code == 1 and "1 trials failed" in outcome.message
    (trial,) = load().trials
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["error"] == "eval/mean_reward is nan"
    run = client.get_run(trial.user_attrs["trial_run_id"])
    assert run.info.status == "FAILED" and run.data.tags["sweep.state"] == "FAIL"
    assert run.data.tags["error"] == "eval/mean_reward is nan"


def test_a_recheck_starting_leaves_a_live_recheck_s_runs_running(
        tracking_uri: str, client: MlflowClient, workdir: Path) -> None:
    """A recheck ends the recheck runs a killed invocation left RUNNING, not those of an
    invocation rechecking at the same time (its parent run is still RUNNING)."""
    from sweep.engine.runs import end_orphans

    p = plan([*SWEEP, f"tracking.uri={tracking_uri}"])
    experiment = client.create_experiment(p.experiment)
    study = {"sweep.study": p.settings.study_name}
    runs = {}
    for who in ("live", "killed"):
        parent = client.create_run(experiment, tags={**study, "sweep.role": "parent"}).info
        leader = client.create_run(experiment, tags={
            **study, "sweep.role": "recheck", "mlflow.parentRunId": parent.run_id}).info
        seed = client.create_run(experiment, tags={
            **study, "sweep.role": "recheck-seed", "mlflow.parentRunId": leader.run_id}).info
        runs[who] = (leader.run_id, seed.run_id)
        if who == "killed":
            client.set_terminated(parent.run_id, "KILLED")  # as end_dead_parents leaves it
    end_orphans(p, ("recheck", "recheck-seed"))
    assert [client.get_run(r).info.status for r in runs["live"]] == ["RUNNING"] * 2
    assert [client.get_run(r).info.status for r in runs["killed"]] == ["FAILED"] * 2


def test_processes_opening_a_new_local_store_at_once_all_succeed(tmp_path: Path) -> None:
    """Four processes that open MLflow's default local store at once in a fresh folder (as
    two ``sweep train`` started together do) all succeed, and the store then answers: without
    the lock, three of four failed creating its tables."""
    code = ("import sys, time\n"
            "from rltrain.tracking import client_for\n"
            "while time.time() < float(sys.argv[1]): time.sleep(0.001)\n"
            "client_for('').create_experiment(f'e{sys.argv[2]}')\n")
    start = f"{time.time() + 8:.3f}"  # every process imported MLflow by then
    env = {**os.environ, "MLFLOW_TRACKING_URI": ""}
    procs = [subprocess.Popen([sys.executable, "-c", code, start, str(i)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(4)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outs
    names = {e.name for e in MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
             .search_experiments()}
    assert {"e0", "e1", "e2", "e3"} <= names
