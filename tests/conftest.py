"""Shared fixtures: a tiny composed config, a private MLflow store, a private folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from rltrain.config import compose_config

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "train.nb_steps=300",
    "train.eval_interval=100",
    "train.eval_episodes=2",
    "train.test_episodes=2",
    "train.checkpoint_interval=100",
    "train.log_interval=1",
    "train.progress=false",
    "agent.memory.limit=1000",
    "agent.policy.nb_steps=200",
    "tracking.log_models=false",  # ~0.6 s a run; tests/test_registry.py covers the models
]


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``make test``'s workers take whole files, so a file's module fixtures run once; each
    README/docs page is a unit of its own. (pytest-xdist 3.8's ``--dist loadgroup`` renames
    node ids through an attribute pytest 9 no longer reads: its groups do not form.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if "test_readme.py::test_every_command" in nodeid:
                return nodeid  # one page
            return nodeid.split("::", 1)[0]

    config.option.loadscopereorder = False  # in collection order: the pages first (below)
    return ByFile(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The README/docs pages, the longest units, are handed out first."""
    items.sort(key=lambda item: item.module.__name__ != "tests.test_readme")  # stable


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test runs in its own folder (MLflow's ./mlruns and outputs/ land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store, made once per test process by MLflow itself (its
    migrations take ~2 s a store). Its Default experiment is removed: MLflow makes it again
    where the copy is opened, with that folder's ./mlruns (it does so for any store that
    lacks one)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = tmp_path_factory.mktemp("empty-store")
    path = folder / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{path}", str(folder / "mlruns")).engine.dispose()
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("DELETE FROM experiment_tags WHERE experiment_id = 0")
        db.execute("DELETE FROM experiments WHERE experiment_id = 0")
    return path


def new_store(folder: Path, empty: Path) -> str:
    """``folder``/mlflow.db as a copy of the empty store; its tracking URI."""
    shutil.copyfile(empty, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture
def tracking_uri(workdir: Path, empty_store: Path) -> str:
    """The test's own MLflow store, ./mlflow.db in its folder (the default a command uses)."""
    return new_store(workdir, empty_store)


@pytest.fixture
def tiny(tracking_uri: str):
    """Compose the tiny config with extra overrides, tracked in the test's own store."""

    def make(*overrides: str):
        return compose_config([*TINY, f"tracking.uri={tracking_uri}", *overrides])

    return make


@pytest.fixture
def client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri)


def run_python(*args: str, cwd: Path, timeout: float = 600,
               path: tuple[Path, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` with the project (and the folders ``path``) importable, in ``cwd``."""
    return subprocess.run([sys.executable, *args], cwd=cwd, env=child_env(path),
                          capture_output=True, text=True, timeout=timeout, check=False)


def child_env(path: tuple[Path, ...] = ()) -> dict[str, str]:
    """The test's environment, with the project (and the folders ``path``) importable."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [ROOT, ROOT / "src", *path]))}


def run_cli(*args: str, cwd: Path, timeout: float = 600,
            path: tuple[Path, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sweep ARGS`` as a user would, in ``cwd``, in a child forked from a
    process that has imported the program (tests/warm.py). A test about the process itself
    starts a new interpreter: ``run_python("-m", "sweep", ...)`` or ``subprocess``."""
    return Warm.get().run(list(args), cwd=cwd, timeout=timeout, path=path)


class Warm:
    """The client of this test process's tests/warm.py server (started on first use)."""

    _server: Warm | None = None

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "warm.py")],
                                     env=child_env(), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self._answer() == "ready", "tests/warm.py did not start"

    @classmethod
    def get(cls) -> Warm:
        if cls._server is None or cls._server.proc.poll() is not None:
            cls._server = cls()
        return cls._server

    def _answer(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def run(self, argv: list[str], cwd: Path, timeout: float,
            path: tuple[Path, ...]) -> subprocess.CompletedProcess[str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with tempfile.TemporaryDirectory() as folder:
            out, err = Path(folder, "out"), Path(folder, "err")
            request = {"argv": argv, "cwd": str(cwd), "env": child_env(path),
                       "path": [str(p) for p in path], "out": str(out), "err": str(err)}
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            pid = json.loads(self._answer())["pid"]
            fired = threading.Event()
            timer = threading.Timer(timeout, lambda: (fired.set(), os.kill(pid, signal.SIGKILL)))
            timer.start()
            try:
                code = json.loads(self._answer())["returncode"]
            finally:
                timer.cancel()
            stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
        if fired.is_set():
            raise subprocess.TimeoutExpired(argv, timeout, stdout, stderr)
        return subprocess.CompletedProcess(["python", "-m", "sweep", *argv], code,
                                           stdout, stderr)
