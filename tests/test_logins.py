"""Secrets that must reach a server without being shown: the recheck logs in to a tracking
server that needs a login, and ``sweep ui`` gives ``mlflow ui`` a database password that no
other user of the machine can read in ``ps``. Real servers (tests/servers.py)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT, run_cli
from tests.servers import PASSWORD, free_port, mlflow_server, postgres

ADMIN_PASSWORD = f"{PASSWORD}-admin"  # MLflow wants 12 characters or more
TINY = ["train.nb_steps=300", "train.eval_interval=100", "train.eval_episodes=1",
        "train.test_episodes=1", "train.checkpoint_interval=0", "agent.memory.limit=1000",
        "agent.policy.nb_steps=150", "sweep.n_jobs=1", "sweep.register_best=false"]


def files_with_password(*folders: Path) -> list[str]:
    return [str(p) for folder in folders for p in folder.rglob("*")
            if p.is_file() and PASSWORD.encode() in p.read_bytes()]


def test_the_recheck_logs_in_to_a_server_that_needs_a_login(workdir: Path,
                                                             tmp_path: Path) -> None:
    """The recheck trains from the invocation's real overrides, not the trial's stored
    (masked) ones: its runs reach the server, and no password is stored anywhere."""
    with mlflow_server(tmp_path / "server", admin_password=ADMIN_PASSWORD) as server:
        with pytest.raises(urllib.error.HTTPError) as refused:  # the server needs a login
            urllib.request.urlopen(f"{server.url}/api/2.0/mlflow/experiments/search"
                                   "?max_results=1", timeout=10)
        assert refused.value.code == 401
        uri = server.url.replace("http://", f"http://admin:{ADMIN_PASSWORD}@")
        proc = run_cli("multirun", *TINY, f"tracking.uri={uri}", "sweep.n_trials=2",
                       "sweep.seeds_per_trial=1", "sweep.pruner=none", "sweep.recheck_top_k=1",
                       "sweep.recheck_seeds=1", cwd=workdir)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert PASSWORD not in proc.stdout + proc.stderr

        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("keras-rl-cartpole").experiment_id
        runs = client.search_runs([experiment])
        roles = sorted(r.data.tags.get("sweep.role", "") for r in runs
                       if r.data.tags.get("sweep.role", "").startswith("recheck"))
        assert roles == ["recheck", "recheck-seed"]
        assert all(r.info.status == "FINISHED" for r in runs)
        for r in runs:
            values = [*r.data.params.values(), *r.data.tags.values()]
            assert not [v for v in values if PASSWORD in v], r.info.run_name
            client.download_artifacts(r.info.run_id, "", str(tmp_path / "got" / r.info.run_id))
        seed_run = next(r for r in runs if r.data.tags.get("sweep.role") == "recheck-seed")
        assert seed_run.data.params["tracking.uri"].endswith(f":***@127.0.0.1:{server.port}")
    assert files_with_password(workdir, tmp_path / "got", tmp_path / "server") == []


def group_of_child(parent: int) -> list[int]:
    """The processes of the process group led by ``parent``'s child (``mlflow ui``)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), int(fields[2]))  # ppid, process group
    (leader,) = [pid for pid, (ppid, _) in stats.items() if ppid == parent]
    return [pid for pid, (_, group) in stats.items() if group == leader]


def read_until(proc: subprocess.Popen[str], start: str, timeout: float) -> str:
    """The first line of ``proc``'s stdout starting with ``start``."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([proc.stdout], [], [], 1)[0]:
            line = proc.stdout.readline()
            if line.startswith(start) or not line:
                return line
    return ""


def test_sweep_ui_puts_no_password_on_a_command_line(workdir: Path) -> None:
    """``python -m sweep ui tracking.uri=postgresql+psycopg2://sweep:PW@...``: the server
    serves that database, and no process of its group has the password in its cmdline."""
    with postgres() as url:
        store = url.replace("postgresql://", "postgresql+psycopg2://")
        MlflowClient(store).create_experiment("served-from-postgres")  # also makes the tables
        port = free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
        ui = subprocess.Popen([sys.executable, "-m", "sweep", "ui", "--port", str(port),
                               f"tracking.uri={store}"], cwd=workdir, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True)
        try:
            ready = read_until(ui, "MLflow UI for", timeout=240)
            assert ready, ui.stderr.read() if ui.poll() is not None else "no answer in 240 s"
            assert PASSWORD not in ready
            group = group_of_child(ui.pid)
            assert len(group) >= 2  # mlflow ui and its uvicorn at least
            for pid in group:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                assert PASSWORD.encode() not in cmdline, cmdline.replace(b"\0", b" ")
            answer = urllib.request.urlopen(
                f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name"
                "?experiment_name=served-from-postgres", timeout=30)
            assert json.load(answer)["experiment"]["name"] == "served-from-postgres"
            log = Path(ready.rsplit("log ", 1)[1].rstrip(")\n"))
            assert PASSWORD not in log.read_text(errors="replace")
        finally:
            alive = ui.poll() is None
            ui.send_signal(signal.SIGTERM)  # sweep ui stops its server's whole group
            _, err = ui.communicate(timeout=60)
        assert alive and ui.returncode == 0, err[-2000:]
        assert PASSWORD not in err
