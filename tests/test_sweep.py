"""Real sweeps (tiny budgets): a real Optuna journal, a real MLflow store, real training."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.distributions import CategoricalDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from sweep.engine import invocation
from sweep.engine.settings import plan
from sweep.present import report
from tests.conftest import ROOT
from tests.test_train import artifact_paths

TINY = ["train.nb_steps=200", "train.eval_interval=100",
        "train.eval_episodes=2", "train.test_episodes=1", "train.checkpoint_interval=0",
        "agent.memory.limit=1000", "agent.policy.nb_steps=150", "sweep.n_jobs=1",
        "sweep.seeds_per_trial=1", "sweep.recheck_top_k=0", "sweep.register_best=false",
        "tracking.log_models=false"]  # ~1 s a run; tests/test_registry.py covers the models
EXPERIMENT = "keras-rl-cartpole"
COMPLETE, PRUNED, FAIL = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL


@pytest.fixture
def sweep(tracking_uri: str):
    """Run ``python -m sweep multirun TINY ARGS`` in this process; return the Outcome."""

    def run(*args: str) -> invocation.Outcome:
        return invocation.run(plan([*TINY, f"tracking.uri={tracking_uri}", *args]), report)

    return run


def storage(name: str = "dqn-cartpole") -> JournalStorage:
    return JournalStorage(JournalFileBackend(f"multirun/{name}/study.log"))


def load(name: str = "dqn-cartpole") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage(name))


def new_study(name: str = "dqn-cartpole") -> optuna.Study:
    Path("multirun", name).mkdir(parents=True, exist_ok=True)
    return optuna.create_study(study_name=name, storage=storage(name), direction="maximize")


def runs(client: MlflowClient) -> tuple[list, dict[str, list]]:
    """The parent runs (oldest first) and each one's child runs, sorted by trial number."""
    exp = client.get_experiment_by_name(EXPERIMENT).experiment_id
    everything = client.search_runs([exp], order_by=["attributes.start_time ASC"])
    parents = [r for r in everything if r.data.tags.get("sweep.role") == "parent"]
    children = {p.info.run_id: sorted(
        (r for r in everything if r.data.tags.get("mlflow.parentRunId") == p.info.run_id),
        key=lambda r: int(r.data.tags["sweep.trial"])) for p in parents}
    return parents, children


def test_four_trials_are_four_child_runs_under_one_parent(sweep, client, capsys) -> None:
    outcome = sweep("sweep.n_trials=4", "agent.model.units=choice(8,24)", "agent.model.layers=1")
    assert (outcome.exit_code, outcome.new_trials) == (0, 4)

    trials = load().trials
    assert [t.state for t in trials] == [COMPLETE] * 4
    for t in trials:  # the command line replaced one dimension and fixed another
        assert t.distributions["agent.model.units"] == CategoricalDistribution((8, 24))
        assert t.params["agent.model.units"] in (8, 24)
        assert "agent.model.layers" not in t.params and "agent.lr" in t.params
        assert t.user_attrs["seeds"] == [t.number * 100]  # sweep.seed*1e6 + trial*100 + j

    (parent,), children = runs(client)
    kids = children[parent.info.run_id]
    assert [r.info.run_name for r in kids] == ["trial-000", "trial-001", "trial-002", "trial-003"]
    for t, run in zip(trials, kids, strict=True):
        assert run.info.run_id == t.user_attrs["trial_run_id"]
        assert run.info.status == "FINISHED" and run.data.tags["sweep.state"] == "COMPLETE"
        assert run.data.tags["sweep.study"] == "dqn-cartpole"
        assert run.data.params["agent.model.layers"] == "1"   # the composed config ...
        assert run.data.params["agent.model.units"] == run.data.tags["sampled.agent.model.units"]
        assert run.data.params["seeds"] == str(t.number * 100)  # ... with sampled values marked
        assert "agent.model.layers" not in {k.removeprefix("sampled.") for k in run.data.tags}
        assert run.data.metrics["objective"] == t.value
        seed_run = client.get_run(t.user_attrs["run_id"])  # the seed's run, nested under it
        assert seed_run.data.tags["mlflow.parentRunId"] == run.info.run_id
        assert seed_run.data.params["seed"] == str(t.number * 100)

    best = max(trials, key=lambda t: t.value)
    assert parent.info.status == "FINISHED"
    parent = client.get_run(parent.info.run_id)
    assert parent.data.metrics["best/eval/mean_reward"] == best.value
    assert parent.data.params["best.agent.lr"] == str(best.params["agent.lr"])
    assert parent.data.params["search.agent.model.units"] == "choice(8,24)"
    assert parent.data.tags["best_trial"] == str(best.number)
    assert {"plots/optimization_history.png", "plots/param_importances.png",
            "plots/parallel_coordinate.png", "plots/intermediate_values.png",
            "best_config.yaml", "top_trials.txt", "trials.csv"} <= artifact_paths(
                client, parent.info.run_id)
    best_cfg = yaml.safe_load(Path("multirun/dqn-cartpole/best_config.yaml").read_text())
    assert best_cfg["agent"]["model"]["units"] == best.params["agent.model.units"]
    assert best_cfg["seed"] == best.number * 100

    out = capsys.readouterr().out
    assert "top trials:" in out and f"objective): trial {best.number}" in out
    assert "python -m sweep train agent.impl=fast train.nb_steps=200" in out, out


def test_second_invocation_resumes(sweep, client) -> None:
    assert sweep("sweep.n_trials=2").new_trials == 2
    first = load().trials
    assert sweep("sweep.n_trials=2").new_trials == 0  # the same command: nothing left to do
    assert sweep("sweep.n_trials=3").new_trials == 1  # n_trials is the total
    trials = load().trials
    assert [t.number for t in trials] == [0, 1, 2]
    assert [t.state for t in trials] == [COMPLETE] * 3
    assert [(t.datetime_start, t.value) for t in trials[:2]] == [
        (t.datetime_start, t.value) for t in first]
    parents, children = runs(client)  # no parent run for the invocation with nothing to do
    assert [[r.info.run_name for r in children[p.info.run_id]] for p in parents] == [
        ["trial-000", "trial-001"], ["trial-002"]]


def test_same_sweep_seed_same_trials(sweep) -> None:
    for name in ("a", "b"):
        assert sweep("sweep.n_trials=2", f"sweep.study_name={name}").exit_code == 0
    a, b = load("a").trials, load("b").trials
    assert [(t.params, t.value, t.intermediate_values) for t in a] == [
        (t.params, t.value, t.intermediate_values) for t in b]


def test_median_pruner_prunes_at_an_evaluation(sweep, client) -> None:
    """A finished trial that scored 500 at every evaluation makes the median pruner
    (set aggressive: one start-up trial, no warm-up) stop the new ones at their first."""
    new_study().add_trial(optuna.trial.create_trial(
        value=500.0, intermediate_values={100: 500.0, 200: 500.0}, params={},
        distributions={}))
    outcome = sweep("sweep.n_trials=3", "sweep.prune_startup_trials=1",
                    "sweep.prune_warmup_steps=0")
    assert outcome.exit_code == 0
    trials = load().trials[1:]
    assert [t.state for t in trials] == [PRUNED, PRUNED]
    (parent,), children = runs(client)
    for t, run in zip(trials, children[parent.info.run_id], strict=True):
        assert list(t.intermediate_values) == [100]
        assert 100 <= t.user_attrs["nb_steps"] < 200  # stopped at the first evaluation
        assert run.info.status == "KILLED"
        assert run.data.tags["sweep.state"] == "PRUNED" and run.data.tags["stopped"] == "pruned"
        curve = client.get_metric_history(run.info.run_id, "eval/mean_reward")
        assert [m.value for m in curve] == [t.intermediate_values[100]]


def test_failed_trials_are_recorded_and_the_sweep_goes_on(sweep, client) -> None:
    study = new_study()
    study.enqueue_trial({"agent.lr": 1e30})                   # the loss turns NaN
    study.enqueue_trial({"agent.policy.value_min": 0.9})      # > value_max: a bad combination
    outcome = sweep("sweep.n_trials=2", "agent.policy.value_max=0.5")
    assert outcome.exit_code == 0
    trials = load().trials
    assert [t.state for t in trials] == [FAIL, FAIL, COMPLETE, COMPLETE]
    assert trials[0].user_attrs["error"].startswith("FloatingPointError: NaN loss at step")
    assert trials[1].user_attrs["error"] == ("ConfigError: agent.policy.value_min=0.9: must be "
                                             "<= agent.policy.value_max (0.5)")
    (parent,), children = runs(client)
    kids = children[parent.info.run_id]
    assert [r.info.status for r in kids] == ["FAILED", "FAILED", "FINISHED", "FINISHED"]
    assert [r.data.tags["sweep.state"] for r in kids] == ["FAIL", "FAIL", "COMPLETE", "COMPLETE"]
    assert [r.data.tags.get("error") for r in kids[:2]] == [
        t.user_attrs["error"] for t in trials[:2]]


def test_too_many_failures_stop_the_sweep(sweep, client, capsys) -> None:
    outcome = sweep("sweep.n_trials=3", "sweep.max_failures=1", "agent.lr=1e30")
    assert outcome.exit_code == 1
    assert "stopped: 2 trials failed, more than sweep.max_failures=1" in outcome.message
    assert [t.state for t in load().trials] == [FAIL, FAIL]
    (parent,), _ = runs(client)
    assert parent.info.status == "FAILED" and "max_failures" in parent.data.tags["error"]


# Long enough that no trial is near its end when the test kills the sweep: once the second
# worker's trial reports, the first (started up to a few seconds earlier) must still be
# training, or it may complete between its last stop check and the kill (seen at 4,000).
KILLED = ["train.nb_steps=8000", "train.eval_interval=1000"]


def start_sweep(workdir: Path, *args: str) -> subprocess.Popen[str]:
    """``python -m sweep multirun TINY ARGS`` in its own process group, as a user starts it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    return subprocess.Popen([sys.executable, "-m", "sweep", "multirun", *TINY, *args],
                            cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for_running(proc: subprocess.Popen[str], n: int) -> list[optuna.trial.FrozenTrial]:
    """The ``n`` RUNNING trials once each has reported an evaluation (its runs exist)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if Path("multirun/dqn-cartpole/study.log").exists():
            running = load().get_trials(states=(TrialState.RUNNING,))
            if len(running) == n and all(t.intermediate_values for t in running):
                return running
    proc.kill()
    pytest.fail(f"no {n} trials running: {proc.communicate()[1][-3000:]}")


def gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize(("n_jobs", "group"), [(1, False), (2, False), (2, True)],
                         ids=["one-process", "main-only-of-two-workers", "process-group"])
def test_kill_9_then_resume_loses_nothing(workdir, tracking_uri, client, n_jobs, group) -> None:
    """kill -9 of a sweep (its main process only, whose spawned workers are orphaned, or its
    whole process group, as an OOM killer may); the same command resumes it: the killed
    trials FAIL, the budget is met by completed trials, one MLflow trial run per trial
    number and no run left RUNNING (parents, trials, seeds), each tagged its trial's state."""
    args = [f"tracking.uri={tracking_uri}", "sweep.n_trials=2", *KILLED]
    proc = start_sweep(workdir, *args, f"sweep.n_jobs={n_jobs}")
    running = wait_for_running(proc, n_jobs)
    if group:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.kill()
    proc.wait(timeout=30)
    workers = {t.user_attrs["pid"] for t in running} - {proc.pid}
    assert len(workers) == (0 if n_jobs == 1 else n_jobs)  # spawned, when more than one
    assert all(gone(pid, within=30) for pid in workers)  # orphans stop, killed or not
    killed_err = proc.stderr.read() if proc.stderr else ""  # the orphans' output too

    resumed = invocation.run(plan([*TINY, *args]), report)
    assert resumed.exit_code == 0, resumed.message
    trials = {t.number: t for t in load().trials}
    killed = [trials[t.number] for t in running]
    assert [t.state for t in killed] == [FAIL] * n_jobs, killed_err[-3000:]
    if workers and not group:  # orphans fail their own trials, not retried; else stale, retried
        assert {t.user_attrs["error"] for t in killed} == {
            "Interrupted: the sweep's main process is gone"}, killed_err[-3000:]
    else:
        assert {t.user_attrs["error"] for t in killed} == {
            f"stale: worker process {t.user_attrs['pid']} is gone" for t in killed}
        assert sorted(t.user_attrs["retry_of"] for t in trials.values()  # same params, seeds
                      if "retry_of" in t.user_attrs) == [t.number for t in killed]
    assert sum(t.state == COMPLETE for t in trials.values()) == 2
    assert not [t for t in trials.values() if t.state not in (COMPLETE, FAIL)]

    exp = client.get_experiment_by_name(EXPERIMENT).experiment_id
    everything = client.search_runs([exp])
    assert not [r.info.run_name for r in everything if r.info.status == "RUNNING"]
    trial_runs = [r for r in everything if r.data.tags.get("sweep.role") not in (
        "parent", "seed")]
    assert sorted(int(r.data.tags["sweep.trial"]) for r in trial_runs) == sorted(trials)
    for r in everything:
        if "sweep.trial" in r.data.tags:  # trial and seed runs: their trial's final state
            t = trials[int(r.data.tags["sweep.trial"])]
            assert (r.data.tags["sweep.state"], r.info.status) == (
                t.state.name, "FINISHED" if t.state == COMPLETE else "FAILED"), r.info.run_name
    parents = [r for r in everything if r.data.tags.get("sweep.role") == "parent"]
    assert sorted(r.info.status for r in parents) == ["FINISHED", "KILLED"]


def test_two_worker_processes_share_one_storage(sweep, client) -> None:
    outcome = sweep("sweep.n_trials=4", "sweep.n_jobs=2")
    assert outcome.exit_code == 0, outcome.message
    trials = load().trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert [t.state for t in trials] == [COMPLETE] * 4
    pids = {t.user_attrs["pid"] for t in trials}
    assert len(pids) == 2 and os.getpid() not in pids
    (parent,), children = runs(client)
    kids = children[parent.info.run_id]
    assert [r.info.run_name for r in kids] == ["trial-000", "trial-001", "trial-002", "trial-003"]
    trial_runs = sorted(t.user_attrs["trial_run_id"] for t in trials)
    assert sorted(r.info.run_id for r in kids) == trial_runs


@pytest.mark.parametrize(("sig", "shown"), [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_ctrl_c_fails_running_trials_and_the_study_resumes(sig, shown, workdir, tracking_uri,
                                                           client) -> None:
    """Ctrl-C, or SIGTERM (kill, scancel, a container's stop), to the whole process group:
    the workers ignore it, the main process stops them cleanly."""
    long = ["train.nb_steps=6000", "train.eval_interval=500"]  # long enough to interrupt
    args = [*TINY, f"tracking.uri={tracking_uri}", "sweep.n_jobs=2", "sweep.n_trials=4", *long]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    proc = subprocess.Popen([sys.executable, "-m", "sweep", "multirun", *args], cwd=workdir,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(1)
        if Path("multirun/dqn-cartpole/study.log").exists():
            running = load().get_trials(states=(TrialState.RUNNING,))
            if len(running) == 2 and all(t.intermediate_values for t in running):
                break
    os.killpg(proc.pid, sig)  # as a terminal's Ctrl-C: the whole process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert f"stopping ({shown}): running trials end as FAILED" in err
    trials = load().trials
    assert [t.state for t in trials] == [FAIL, FAIL]
    assert {t.user_attrs["error"] for t in trials} == {"Interrupted: stopped by Ctrl-C or SIGTERM"}
    (parent,), children = runs(client)
    assert parent.info.status == "KILLED" and parent.data.tags["stopped"] == "interrupted"
    assert [(r.info.status, r.data.tags["sweep.state"]) for r in children[parent.info.run_id]] \
        == [("FAILED", "FAIL")] * 2

    # the same settings resume (other fixed overrides would be refused)
    resumed = invocation.run(plan([*TINY, f"tracking.uri={tracking_uri}", "sweep.n_trials=1",
                                   *long]), report)
    assert resumed.exit_code == 0
    assert [t.state for t in load().trials] == [FAIL, FAIL, COMPLETE]
