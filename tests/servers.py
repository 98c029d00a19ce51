"""Throwaway servers on loopback for the distributed tests: PostgreSQL and MLflow.

PostgreSQL is an ``initdb`` cluster in a temporary folder (run as the ``postgres`` user
when the tests run as root, since PostgreSQL refuses root); MLflow is ``mlflow server``
on a free port. Both stop when the fixture ends.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PASSWORD = "s3cret-pw"  # a test cluster's password: what the masking tests look for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin(name: str) -> str:
    """A PostgreSQL server binary: on PATH, or in Debian's versioned folder."""
    found = shutil.which(name) or next(iter(sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise RuntimeError(f"{name} not found: install PostgreSQL (.ci/run does)")
    return found


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL cluster on 127.0.0.1; yields ``postgresql://sweep:PW@127.0.0.1:PORT/optuna``."""
    root = Path(tempfile.mkdtemp(prefix="pg-"))
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    run = lambda *cmd: subprocess.run(_as_postgres(list(cmd)), check=True,  # noqa: E731
                                      capture_output=True, text=True)
    run(pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
        "--auth-host=scram-sha-256", "-E", "UTF8")
    run(pg_bin("pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "start", "-o",
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1")
    try:
        psql = ["psql", "-h", str(sockets), "-p", str(port), "-U", "postgres", "-q", "-c"]
        run(*psql, f"CREATE ROLE sweep LOGIN PASSWORD '{PASSWORD}'")
        run(*psql, "CREATE DATABASE optuna OWNER sweep")
        yield f"postgresql://sweep:{PASSWORD}@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run(_as_postgres([pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate",
                                     "stop"]), capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 with its own store; yields ``http://127.0.0.1:PORT``."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    log = (folder / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
         "--artifacts-destination", str(folder / "artifacts"), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(folder / 'server.log')}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
