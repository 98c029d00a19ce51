"""optuna-dashboard (the ``dashboard`` extra) reads the sweep's storages: the default journal
file ``multirun/<study>/study.log`` and a PostgreSQL database (``postgresql+psycopg2://``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from tests.servers import free_port, postgres

DASHBOARD = Path(sys.executable).with_name("optuna-dashboard")
pytestmark = pytest.mark.skipif(  # CI installs requirements.lock, which pins it
    not DASHBOARD.exists() and not os.environ.get("CI"),
    reason="optuna-dashboard not installed: pip install -e .[dashboard]")


def add_study(storage: optuna.storages.BaseStorage, name: str) -> None:
    """A study of three trials, as a sweep leaves one (value per trial, a report each)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")

    def objective(trial: optuna.Trial) -> float:
        units = trial.suggest_categorical("agent.model.units", [16, 32])
        trial.report(units / 2, 100)
        return float(units)

    for units in (16, 32, 16):  # fixed, so the best value is known: 32
        study.enqueue_trial({"agent.model.units": units})
    study.optimize(objective, n_trials=3)


@contextmanager
def dashboard(storage: str, cwd: Path) -> Iterator[str]:
    """``optuna-dashboard STORAGE`` on a free loopback port; yields its base URL."""
    port = free_port()
    log = (cwd / "dashboard.log").open("w")
    proc = subprocess.Popen([str(DASHBOARD), storage, "--host", "127.0.0.1", "--port",
                             str(port)], cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def get(url: str, timeout: float = 60) -> dict:
    """The JSON at ``url``, once the server answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def check_study(base: str, name: str) -> None:
    """The dashboard's API lists the study, with its three trials and best value."""
    summaries = get(f"{base}/api/studies")["study_summaries"]
    assert [s["study_name"] for s in summaries] == [name]
    detail = get(f"{base}/api/studies/{summaries[0]['study_id']}")
    assert len(detail["trials"]) == 3
    assert [t["values"] for t in detail["best_trials"]] == [[32.0]] * len(detail["best_trials"])


def test_dashboard_opens_the_default_journal(tmp_path: Path) -> None:
    path = tmp_path / "multirun" / "dqn-cartpole" / "study.log"
    path.parent.mkdir(parents=True)
    add_study(JournalStorage(JournalFileBackend(str(path))), "dqn-cartpole")
    with dashboard("multirun/dqn-cartpole/study.log", tmp_path) as base:
        check_study(base, "dqn-cartpole")


def test_dashboard_opens_a_postgresql_storage(tmp_path: Path) -> None:
    with postgres() as url:
        psycopg2_url = url.replace("postgresql://", "postgresql+psycopg2://")
        add_study(RDBStorage(psycopg2_url), "cartpole-big")
        with dashboard(psycopg2_url, tmp_path) as base:
            check_study(base, "cartpole-big")
