"""Sweeps across machines, on real servers: a throwaway PostgreSQL cluster holds the study, a
throwaway ``mlflow server`` the runs, and worker processes join one study; one is killed
with SIGKILL in the middle of a trial; the tracking server is killed mid-trial and started
again. Bad connections fail in one line, password masked."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from rltrain.config import ConfigError
from sweep.engine import invocation
from sweep.engine import study as study_
from sweep.engine.settings import plan
from sweep.engine.storage import open_storage, sqlalchemy_url
from sweep.present import report
from tests.conftest import ROOT, run_cli
from tests.servers import PASSWORD, MlflowServer, free_port, mlflow_server, postgres

EXPERIMENT = "keras-rl-cartpole"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
TINY = ["agent.impl=keras-rl", "train.nb_steps=300", "train.eval_interval=100",
        "train.eval_episodes=1", "train.test_episodes=1", "train.checkpoint_interval=0",
        "agent.memory.limit=1000", "agent.policy.nb_steps=200", "sweep.n_jobs=1",
        "sweep.heartbeat_interval=1", "sweep.grace_period=4", "sweep.seeds_per_trial=1",
        "sweep.recheck_top_k=0", "sweep.register_best=false"]


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres() as url:
        yield url


@pytest.fixture(scope="module")
def mlflow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(scope="module")
def mlflow(mlflow_dir: Path) -> Iterator[MlflowServer]:
    with mlflow_server(mlflow_dir) as server:
        yield server


@pytest.fixture
def mlflow_url(mlflow: MlflowServer) -> str:
    if mlflow.proc is None:  # a test that stopped it failed before starting it again
        mlflow.start()
    return mlflow.url


def with_password(url: str) -> str:
    """``http://HOST`` -> ``http://sweep:PASSWORD@HOST``: a tracking URL with a secret."""
    return url.replace("http://", f"http://sweep:{PASSWORD}@")


@functools.cache
def rdb(url: str) -> RDBStorage:
    """One storage (one connection pool) per database for the whole module: a new one per
    look would hold connections until garbage collection, past PostgreSQL's limit."""
    return RDBStorage(sqlalchemy_url(url))


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=rdb(url))


def studies(url: str) -> list[str]:
    return optuna.get_all_study_names(rdb(url))


def start(command: str, args: list[str], cwd: Path, log: str) -> subprocess.Popen[bytes]:
    """``python -m sweep COMMAND ARGS`` in the background, output to ``cwd/log.{out,err}``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    return subprocess.Popen([sys.executable, "-m", "sweep", command, *args], cwd=cwd, env=env,
                            stdout=(cwd / f"{log}.out").open("w"),
                            stderr=(cwd / f"{log}.err").open("w"))


def wait_for_trial_of(url: str, name: str, pid: int, proc: subprocess.Popen[bytes],
                      timeout: float = 240, evaluated: bool = True) -> int:
    """The number of the trial ``pid`` is training, once it has reported an evaluation
    (``evaluated=False``: once it has been claimed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for t in load(url, name).get_trials(states=(TrialState.RUNNING,)):
            if t.user_attrs.get("pid") == pid and (t.intermediate_values or not evaluated):
                return t.number
        time.sleep(0.2)
    raise AssertionError(f"no running trial of pid {pid} (exit code {proc.poll()})")


def secrets_in(*folders: Path) -> list[str]:
    """Files under ``folders`` whose bytes contain the password."""
    return [str(p) for folder in folders for p in folder.rglob("*")
            if p.is_file() and PASSWORD.encode() in p.read_bytes()]


def test_a_killed_worker_s_trial_fails_and_is_retried(pg_url, mlflow_url, mlflow_dir,
                                                      workdir) -> None:
    """Two workers (a ``multirun`` and a ``worker`` process) on one PostgreSQL study; the
    ``worker`` is killed (SIGKILL) mid-trial. Its trial becomes FAILED and is run again by
    the live worker; every other trial finishes once; the total is exactly n_trials."""
    name, n_trials = "killed", 4
    args = [*TINY, f"sweep.storage={pg_url}", f"sweep.study_name={name}",
            f"sweep.n_trials={n_trials}", f"tracking.uri={with_password(mlflow_url)}",
            "train.nb_steps=800"]
    study_.create_study(plan(args), open_storage(plan(args)))  # then both start at once
    live = start("multirun", args, workdir, "live")
    doomed = start("worker", args, workdir, "doomed")
    try:
        killed = wait_for_trial_of(pg_url, name, doomed.pid, doomed)
        doomed.send_signal(signal.SIGKILL)
        assert live.wait(timeout=300) == 0, (workdir / "live.err").read_text()[-3000:]
    finally:
        for proc in (live, doomed):
            proc.kill()
            proc.wait()

    trials = load(pg_url, name).trials
    by_number = {t.number: t for t in trials}
    assert by_number[killed].state == TrialState.FAIL
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == killed]
    assert retry.system_attrs["failed_trial"] == killed
    assert retry.state in FINISHED and retry.params == by_number[killed].params
    assert retry.user_attrs["pid"] == live.pid
    others = [t for t in trials if t.number != killed]
    assert all(t.state in FINISHED for t in others), [(t.number, t.state) for t in others]
    assert len(others) == n_trials == len(trials) - 1  # each trial once, the budget exact
    assert {t.user_attrs["pid"] for t in trials} == {live.pid, doomed.pid}
    seeds = [t.user_attrs["seeds"] for t in (by_number[killed], retry)]
    assert seeds == [[killed * 100]] * 2  # the retry trains the same config, same seeds

    client = MlflowClient(mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id],
                              f"tags.`sweep.study` = '{name}'")
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    trial_runs = {}
    for r in runs:  # each trial's own run (its seed's run is nested under it)
        if "sweep.trial" in r.data.tags and r.data.tags.get("sweep.role") != "seed":
            trial_runs.setdefault(int(r.data.tags["sweep.trial"]), []).append(r)
    assert sorted(trial_runs) == sorted(by_number)  # one run per trial
    (dead,) = trial_runs[killed]
    assert dead.info.status == "FAILED" and dead.data.tags["sweep.state"] == "FAIL"
    assert "no heartbeat" in dead.data.tags["error"]
    assert [r.data.tags["sweep.state"] for r in trial_runs[retry.number]] == [retry.state.name]
    parents = {r.info.run_id: r for r in runs if r.data.tags.get("sweep.role") == "parent"}
    assert parents[dead.data.tags["mlflow.parentRunId"]].info.status == "KILLED"
    assert parents[trial_runs[retry.number][0].data.tags["mlflow.parentRunId"]].info.status \
        == "FINISHED"

    # the password appears in no output, run, artifact, trial folder or server file
    assert "no heartbeat" in (workdir / "live.err").read_text()
    for r in runs:
        values = [*r.data.params.values(), *r.data.tags.values()]
        assert not [v for v in values if PASSWORD in v], r.info.run_name
        client.download_artifacts(r.info.run_id, "", str(workdir / "artifacts" / r.info.run_id))
    assert any("***@" in v for r in runs for v in r.data.params.values())  # masked, not dropped
    assert secrets_in(workdir, mlflow_dir) == []


def test_tracking_server_down_mid_trial_loses_nothing(pg_url, mlflow, mlflow_url,
                                                     workdir) -> None:
    """The tracking server is killed (SIGKILL) as a trial of a PostgreSQL study starts (its
    runs' creation, params and first metrics meet the outage) and started again on the
    same port and store (down ~20 s: 5 s, then its start-up): the trial waits for it, and
    the sweep ends with every trial once, COMPLETE, one MLflow run each, none left
    RUNNING, the password in no output."""
    name, n_trials = "outage", 1
    args = [*TINY, f"sweep.storage={pg_url}", f"sweep.study_name={name}",
            f"sweep.n_trials={n_trials}", f"tracking.uri={with_password(mlflow_url)}",
            "sweep.pruner=none"]
    study_.create_study(plan(args), open_storage(plan(args)))
    proc = start("multirun", args, workdir, "outage")
    try:
        number = wait_for_trial_of(pg_url, name, proc.pid, proc, evaluated=False)
        mlflow.stop(kill=True)
        time.sleep(5)
        mlflow.start()
        assert proc.wait(timeout=300) == 0, (workdir / "outage.err").read_text()[-3000:]
    finally:
        proc.kill()
        proc.wait()

    trials = load(pg_url, name).trials
    assert [(t.number, t.state) for t in trials] == [(i, TrialState.COMPLETE)
                                                     for i in range(n_trials)]
    client = MlflowClient(mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id],
                              f"tags.`sweep.study` = '{name}'")
    assert [r.info.run_name for r in runs if r.info.status != "FINISHED"] == []
    for role in ("trial", "seed"):  # one trial run and one seed run per trial
        numbers = sorted(int(r.data.tags["sweep.trial"]) for r in runs
                         if r.data.tags.get("sweep.role", "trial") == role
                         and "sweep.trial" in r.data.tags)
        assert numbers == list(range(n_trials)), role
    by_trial = {int(r.data.tags["sweep.trial"]): r for r in runs
                if "sweep.trial" in r.data.tags and "sweep.role" not in r.data.tags}
    assert {n: r.info.run_id for n, r in by_trial.items()} == \
        {t.number: t.user_attrs["trial_run_id"] for t in trials}
    hit = by_trial[number]  # the interrupted trial's curve and artifacts are all there
    assert [m.step for m in client.get_metric_history(hit.info.run_id, "objective")] == \
        [100, 200, 300, 300]
    seed_run = client.get_run(trials[number].user_attrs["run_id"])
    assert {"config.yaml", "learning_curve.png"} <= {
        a.path for a in client.list_artifacts(seed_run.info.run_id)}
    err = (workdir / "outage.err").read_text()
    assert "does not answer" in err and "answers again" in err and "***@" in err
    assert PASSWORD not in err + (workdir / "outage.out").read_text()


def test_a_tracking_server_that_stays_down_stops_the_sweep(pg_url, mlflow, mlflow_url, workdir,
                                                          monkeypatch) -> None:
    """Down past SWEEP_TRACKING_WAIT: its trial fails once and the worker stops with one line
    (instead of failing trial after trial up to max_failures); once the server is back, the
    same command completes the budget with no run left RUNNING."""
    monkeypatch.setenv("SWEEP_TRACKING_WAIT", "3")
    name, n_trials = "gone", 2
    args = [*TINY, f"sweep.storage={pg_url}", f"sweep.study_name={name}",
            f"sweep.n_trials={n_trials}", f"tracking.uri={with_password(mlflow_url)}",
            "sweep.pruner=none", "sweep.max_failures=5"]
    study_.create_study(plan(args), open_storage(plan(args)))
    proc = start("multirun", args, workdir, "gone")
    try:
        wait_for_trial_of(pg_url, name, proc.pid, proc, evaluated=False)
        mlflow.stop(kill=True)
        proc.wait(timeout=120)
    finally:
        proc.kill()
        proc.wait()
        mlflow.start()
    err = (workdir / "gone.err").read_text()
    assert "worker 0: stopping: the tracking server stayed down past SWEEP_TRACKING_WAIT" in err
    trials = load(pg_url, name).trials
    assert [t.state for t in trials] == [TrialState.FAIL], err[-3000:]
    assert trials[0].user_attrs["error"].startswith("ServerUnavailable: tracking server")

    resumed = run_cli("multirun", *args, cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    states = [t.state for t in load(pg_url, name).trials]
    assert states.count(TrialState.COMPLETE) == n_trials and states[0] == TrialState.FAIL
    client = MlflowClient(mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id],
                              f"tags.`sweep.study` = '{name}'")
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    assert PASSWORD not in err + (workdir / "gone.out").read_text() + resumed.stdout \
        + resumed.stderr


def test_password_from_a_pgpass_file(pg_url, tracking_uri, workdir, monkeypatch) -> None:
    """A URL without a password: libpq takes it from PGPASSFILE (or PGPASSWORD)."""
    bare = pg_url.replace(f":{PASSWORD}@", "@")
    args = [*TINY, f"sweep.storage={bare}", "sweep.study_name=pgpass", "sweep.n_trials=1",
            f"tracking.uri={tracking_uri}"]
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(workdir / "missing"))
    with pytest.raises(ConfigError, match="cannot connect: .*password"):
        invocation.run(plan(args), report)
    host_port = pg_url.split("@")[1].split("/")[0]
    pgpass = workdir / "pgpass"
    pgpass.write_text(f"{host_port}:optuna:sweep:{PASSWORD}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    assert invocation.run(plan(args), report).exit_code == 0
    assert [t.state for t in load(pg_url, "pgpass").trials] == [TrialState.COMPLETE]


def bad(pg_url: str, mlflow_url: str) -> dict[str, tuple[str, list[str], str]]:
    """case -> (command, overrides, what the one error line says)."""
    dead_pg = f"postgresql://sweep:{PASSWORD}@127.0.0.1:{free_port()}/optuna"
    wrong = pg_url.replace(PASSWORD, f"{PASSWORD}-not")
    dead_mlflow = with_password(f"http://127.0.0.1:{free_port()}")
    return {
        "storage unreachable": ("multirun", [f"sweep.storage={dead_pg}"],
                                "cannot connect: connection to server at"),
        "wrong password": ("multirun", [f"sweep.storage={wrong}"],
                           'password authentication failed for user "sweep"'),
        "no such study": ("worker", [f"sweep.storage={pg_url}"], "no such study in"),
        "tracking unreachable": ("multirun", [f"sweep.storage={pg_url}",
                                              f"tracking.uri={dead_mlflow}"],
                                 "no MLflow tracking server answers there"),
    }


@pytest.mark.parametrize("case", ["storage unreachable", "wrong password", "no such study",
                                  "tracking unreachable"])
def test_bad_connections_fail_in_one_line(case, pg_url, mlflow_url, workdir) -> None:
    command, overrides, says = bad(pg_url, mlflow_url)[case]
    name = f"bad-{case.replace(' ', '-')}"
    start_ = time.monotonic()
    proc = run_cli(command, *TINY, f"sweep.study_name={name}",
                   f"tracking.uri={mlflow_url}", *overrides, cwd=workdir, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert says in proc.stderr and "***@" in proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr
    assert time.monotonic() - start_ < 60
    assert name not in studies(pg_url)  # no partial study
    assert not (workdir / "multirun").exists()


def test_worker_refuses_another_search_space(pg_url, mlflow_url, workdir) -> None:
    args = [*TINY, f"sweep.storage={pg_url}", "sweep.study_name=space",
            f"tracking.uri={mlflow_url}"]
    study_.create_study(plan(args), open_storage(plan(args)))
    before = load(pg_url, "space").user_attrs
    proc = run_cli("worker", *args, "agent.lr=interval(1e-5,1e-1)", cwd=workdir, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: sweep.study_name=space: search space not the "
                                  "study's: agent.lr: interval(1e-5,1e-1) here, "
                                  f"{before['space']['agent.lr']} in the study; ")
    assert proc.stderr.count("\n") == 1
    proc = run_cli("worker", *args, "train.nb_steps=400", cwd=workdir, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "fixed overrides not the study's: " in proc.stderr and proc.stderr.count("\n") == 1
    after = load(pg_url, "space")
    assert after.user_attrs == before and after.trials == []


def test_heartbeat_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"sweep.grace_period=2: must be > "
                                          r"sweep.heartbeat_interval \(2\)"):
        plan(["sweep.heartbeat_interval=2", "sweep.grace_period=2"])
    with pytest.raises(ConfigError, match="sweep.max_retry=-1: must be >= 0"):
        plan(["sweep.max_retry=-1"])
