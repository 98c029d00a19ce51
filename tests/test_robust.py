"""Trials on several seeds, pruning on their aggregate, the recheck of the leaders and its
resumption after a kill, and best naming the recheck's winner (real sweeps, tiny budgets)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from sweep.engine import invocation, objective
from sweep.engine import study as study_
from sweep.engine.leaders import stored_results
from sweep.engine.seeds import recheck_seeds
from sweep.engine.settings import plan
from sweep.engine.winner import KEY as WINNER
from sweep.present import report
from tests.conftest import ROOT, run_cli
from tests.test_sweep import load

TINY = ["train.nb_steps=300", "train.eval_interval=100", "train.eval_episodes=2",
        "train.test_episodes=2", "train.checkpoint_interval=0", "agent.memory.limit=1000",
        "agent.policy.nb_steps=150", "sweep.n_jobs=1", "sweep.register_best=false"]


def test_pruning_acts_on_the_seeds_aggregate(tracking_uri: str, client: MlflowClient) -> None:
    """Two seeds side by side; the trial reports min over seeds of their scores at each
    evaluation, and a prune stops both seeds at that evaluation."""
    outcome = invocation.run(plan([*TINY, f"tracking.uri={tracking_uri}", "sweep.n_trials=2",
                                   "sweep.seeds_per_trial=2", "sweep.aggregate=min",
                                   "sweep.seed_score=mean", "sweep.pruner=threshold",
                                   "sweep.prune_threshold=1000", "sweep.prune_warmup_steps=0",
                                   "sweep.recheck_top_k=0"]), report)
    assert outcome.exit_code == 0, outcome.message
    for t in load().trials:
        assert t.state == TrialState.PRUNED and list(t.intermediate_values) == [100]
        firsts = []
        for run_id in t.user_attrs["seed_run_ids"]:
            run = client.get_run(run_id)
            assert run.info.status == "KILLED" and run.data.tags["stopped"] == "pruned"
            curve = client.get_metric_history(run_id, "eval/mean_reward")
            assert len(curve) == 1 and 100 <= curve[0].step < 200  # stopped at its first
            firsts.append(curve[0].value)
        assert t.intermediate_values[100] == objective.aggregate(firsts, "min")
        trial_run = client.get_run(t.user_attrs["trial_run_id"])
        assert trial_run.info.status == "KILLED"
        agg = client.get_metric_history(trial_run.info.run_id, "eval/mean_reward")
        assert [(m.step, m.value) for m in agg] == [(100, sum(firsts) / 2)]


RECHECK = ["multirun", *TINY, "train.nb_steps=800", "train.eval_interval=400",
           "sweep.n_trials=2", "sweep.seeds_per_trial=2", "sweep.pruner=none",
           "sweep.recheck_top_k=2", "sweep.recheck_seeds=3", "sweep.register_best=true"]


def test_recheck_resumes_after_a_kill_and_best_names_its_winner(
        workdir: Path, tracking_uri: str, client: MlflowClient) -> None:
    args = [*RECHECK, f"tracking.uri={tracking_uri}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    proc = subprocess.Popen([sys.executable, "-m", "sweep", *args], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline, before = time.monotonic() + 300, {}
    while time.monotonic() < deadline and proc.poll() is None and not before:
        time.sleep(0.5)
        if Path("multirun/dqn-cartpole/study.log").exists():
            before = stored_results(load())
    os.killpg(proc.pid, signal.SIGKILL)  # the main process and its recheck worker
    proc.wait(timeout=30)
    assert 1 <= len(before) < 6, proc.stderr.read()[-3000:] if proc.stderr else ""

    again = run_cli(*args, cwd=workdir)
    assert again.returncode == 0, again.stderr[-3000:]
    study = load()
    stored = stored_results(study)
    fresh = recheck_seeds(0, 3)
    leaders = sorted(study.trials, key=lambda t: t.value, reverse=True)[:2]
    assert set(stored) == {(t.number, s) for t in leaders for s in fresh}
    assert all(stored[k] == v for k, v in before.items())  # kept, not trained again
    exp = client.get_experiment_by_name("keras-rl-cartpole").experiment_id
    everything = client.search_runs([exp])
    assert not [r for r in everything if r.info.status == "RUNNING"]
    seed_runs = [r for r in everything if r.data.tags.get("sweep.role") == "recheck-seed"]
    finished = [r for r in seed_runs if r.info.status == "FINISHED"]
    assert sorted(r.info.run_id for r in finished) == sorted(v["run_id"] for v in stored.values())
    for t in leaders:  # seeds_per_trial=2: a leader's first two fresh seeds trained side by side
        first, second = (next(r for r in finished if r.info.run_id == stored[t.number, s]["run_id"])
                         for s in fresh[:2])
        assert first.info.start_time < second.info.end_time
        assert second.info.start_time < first.info.end_time

    def rank(t: optuna.trial.FrozenTrial) -> tuple[float, float]:
        mine = [v for k, v in stored.items() if k[0] == t.number]
        return (sum(v["test"] >= 475 for v in mine) / len(mine),
                objective.aggregate([v["score"] for v in mine], "mean"))

    winner = max(leaders, key=rank)
    assert study.user_attrs[WINNER]["trial"] == winner.number
    best = run_cli("best", "--json", cwd=workdir)
    assert best.returncode == 0, best.stderr[-2000:]
    named = json.loads(best.stdout)
    assert named["trial"] == winner.number and named["recheck"]["seeds"] == fresh
    assert named["run_id"] == winner.user_attrs["run_id"]
    assert f"seed={winner.user_attrs['seeds'][0]}" in named["command"]
    (version,) = client.search_model_versions("name = 'dqn-cartpole'")  # the winner, registered
    assert version.run_id == winner.user_attrs["run_id"]


def test_a_recheck_run_whose_result_was_lost_ends_superseded(
        workdir: Path, tracking_uri: str, client: MlflowClient) -> None:
    """Killed between a seed run's end and its result's store: on resume that run ends
    KILLED, tagged, and the FINISHED recheck runs are the stored ones; under a RUNNING
    parent (another invocation at work) nothing is touched."""
    from rltrain.tracking import tracked_run
    from sweep.engine.runs import end_unstored

    p = plan([f"tracking.uri={tracking_uri}"])
    seed_tags = {"sweep.study": p.settings.study_name, "sweep.role": "recheck-seed"}
    with tracked_run(tracking_uri, p.experiment, "recheck-trial-000") as dead_parent:
        pass
    runs = {}
    for name in ("stored", "lost"):
        with tracked_run(tracking_uri, p.experiment, name, tags=seed_tags,
                         parent_run_id=dead_parent.run_id) as run:
            runs[name] = run.run_id
    with tracked_run(tracking_uri, p.experiment, "recheck-trial-001") as live_parent:
        with tracked_run(tracking_uri, p.experiment, "at-work", tags=seed_tags,
                         parent_run_id=live_parent.run_id) as run:
            runs["at-work"] = run.run_id
        end_unstored(p, {runs["stored"]})
        status = {n: client.get_run(r).info.status for n, r in runs.items()}
    assert status == {"stored": "FINISHED", "lost": "KILLED", "at-work": "FINISHED"}
    assert "sweep.superseded" in client.get_run(runs["lost"]).data.tags


def test_invocations_at_once_never_sample_the_same_trial(workdir: Path) -> None:
    """Two invocations on one journal study (two study objects, as two processes hold them),
    claiming in turn: every trial's sampler is seeded by its own number, so no two trials
    draw the same values; and the same sweep seed gives the same trials again."""
    import threading

    from sweep.engine import space as space_
    from sweep.engine.storage import open_storage
    from sweep.engine.workers import Job, claim, load_study

    def sweep_params(name: str) -> list[dict]:
        p = plan([f"sweep.study_name={name}", "sweep.n_trials=8", "sweep.sampler=random"])
        study_.create_study(p, open_storage(p))
        job = Job(p, "", threading.Lock(), threading.Event(), os.getpid())
        invocations = [load_study(job, open_storage(p)) for _ in range(2)]
        for i in range(8):
            study = invocations[i % 2]
            trial = claim(study, open_storage(p), job, 0)
            space_.suggest(trial, p.space)
            study.tell(trial, float(i))
        return [t.params for t in load(name).trials]

    first = sweep_params("twice")
    assert len(first) == 8
    assert len({tuple(sorted(p.items())) for p in first}) == 8  # no duplicate configs
    assert sweep_params("again") == first


def test_stale_trial_of_a_reused_pid_fails(workdir: Path) -> None:
    """A RUNNING trial whose pid is alive but belongs to another process now (same pid,
    another start time) is stale on the journal; one whose process is the same is not."""
    import socket

    from sweep.engine.storage import fail_stale_trials, open_storage, process_identity

    p = plan(["sweep.study_name=reused", "sweep.n_trials=2", "sweep.max_retry=0"])
    storage = open_storage(p)
    study = study_.create_study(p, storage)
    alive, reused = study.ask(), study.ask()
    for trial, process in ((alive, process_identity(os.getpid())), (reused, "boot:1")):
        for key, value in {"pid": os.getpid(), "host": socket.gethostname(),
                           "process": process}.items():
            trial.set_user_attr(key, value)
    stale = fail_stale_trials(study, storage, p)
    assert [s.number for s in stale] == [reused.number]
    states = {t.number: t.state for t in load("reused").trials}
    assert states == {alive.number: TrialState.RUNNING, reused.number: TrialState.FAIL}
    assert "another process" in load("reused").trials[reused.number].user_attrs["error"]


def test_multirun_refuses_to_resume_with_other_settings(workdir: Path) -> None:
    """Resuming with another space, fixed override or objective would mix trials that cannot
    be compared (or fail every TPE trial): refused, naming the difference; the same
    settings resume."""
    import pytest

    from rltrain.config import ConfigError
    from sweep.engine.storage import open_storage

    base = ["sweep.study_name=same", "train.nb_steps=500"]
    p = plan(base)
    study_.create_study(p, open_storage(p))
    study_.create_study(p, open_storage(p))  # the same settings: resumes
    for changed, what in [(["agent.lr=interval(1e-5,1e-1)"], "search space"),
                          (["train.nb_steps=400"], "fixed overrides"),
                          (["sweep.seeds_per_trial=3"], "objective"),
                          (["sweep.metric=test/mean_reward"], "sweep.metric")]:
        other = plan([*base, *changed])
        with pytest.raises(ConfigError, match=f"{what} not the study's: .*sweep.study_name=NEW"):
            study_.create_study(other, open_storage(other))
