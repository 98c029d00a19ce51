"""Shared fixtures: a tiny composed config, a private MLflow store, a private folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test runs in its own folder (MLflow's ./mlruns and outputs/ land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tracking_uri(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'mlflow.db'}"


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
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [ROOT, ROOT / "src", *path]))}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def run_cli(*args: str, cwd: Path, timeout: float = 600,
            path: tuple[Path, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sweep ARGS`` as a user would, in ``cwd``."""
    return run_python("-m", "sweep", *args, cwd=cwd, timeout=timeout, path=path)
