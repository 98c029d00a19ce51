"""Throwaway servers on loopback for the distributed tests: PostgreSQL and MLflow.

PostgreSQL is an ``initdb`` cluster in a temporary folder (run as the ``postgres`` user
when the tests run as root, since PostgreSQL refuses root); MLflow is ``mlflow server``
on a free port. Both stop when the fixture ends.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Cluster:
    """A running test cluster: its port and the folder of its Unix socket (the ``postgres``
    superuser connects there without a password)."""

    port: int
    sockets: Path

    def psql(self, sql: str) -> None:
        subprocess.run(_as_postgres(["psql", "-h", str(self.sockets), "-p", str(self.port),
                                     "-U", "postgres", "-q", "-c", sql]),
                       check=True, capture_output=True, text=True)


@contextmanager
def cluster() -> Iterator[Cluster]:
    """An empty PostgreSQL cluster on 127.0.0.1 (password logins over TCP), stopped at the end."""
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
        yield Cluster(port, sockets)
    finally:
        subprocess.run(_as_postgres([pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate",
                                     "stop"]), capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL cluster on 127.0.0.1; yields ``postgresql://sweep:PW@127.0.0.1:PORT/optuna``."""
    with cluster() as pg:
        pg.psql(f"CREATE ROLE sweep LOGIN PASSWORD '{PASSWORD}'")
        pg.psql("CREATE DATABASE optuna OWNER sweep")
        yield f"postgresql://sweep:{PASSWORD}@127.0.0.1:{pg.port}/optuna"


AUTH_CONFIG = """[mlflow]
default_permission = READ
database_uri = sqlite:///{folder}/basic_auth.db
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
"""


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with its own store in ``folder``; ``stop`` and ``start``
    again keep its port and its store (a tracking server's outage). With ``admin_password``:
    MLflow's basic-auth app, every request needing a login (user ``admin``)."""

    def __init__(self, folder: Path, admin_password: str = "") -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_password = admin_password
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        # MLflow's GenAI job runner (seven more processes) serves nothing these tests use
        env, app = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}, []
        if self.admin_password:  # MLflow ships no admin password: the first start sets it
            (self.folder / "auth.ini").write_text(AUTH_CONFIG.format(folder=self.folder))
            env.update(MLFLOW_AUTH_CONFIG_PATH=str(self.folder / "auth.ini"),
                       MLFLOW_AUTH_ADMIN_PASSWORD=self.admin_password,
                       MLFLOW_FLASK_SERVER_SECRET_KEY=uuid.uuid4().hex)  # for CSRF tokens
            app = ["--app-name", "basic-auth"]
        with (self.folder / "server.log").open("a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", *app, "--host", "127.0.0.1",
                 "--port", str(self.port),
                 "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
                 "--artifacts-destination", str(self.folder / "artifacts"), "--workers", "1"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.folder, env=env,
                start_new_session=True)
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self._cheap_login()
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {self.folder / 'server.log'}")
            time.sleep(0.3)

    def _cheap_login(self) -> None:
        """The admin's password stored as a 1,000-round PBKDF2 hash instead of MLflow's
        scrypt (~140 ms of server CPU per request here, and every request checks it): the
        server still refuses a request without the login."""
        if not self.admin_password:
            return
        from werkzeug.security import generate_password_hash

        cheap = generate_password_hash(self.admin_password, method="pbkdf2:sha256:1000")
        with sqlite3.connect(self.folder / "basic_auth.db") as db:
            db.execute("UPDATE users SET password_hash = ? WHERE username = 'admin'", (cheap,))

    def stop(self, kill: bool = False) -> None:
        """Stop the server and every process it started (``kill``: SIGKILL, as a crash)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        self.proc = None


@contextmanager
def mlflow_server(folder: Path, admin_password: str = "") -> Iterator[MlflowServer]:
    """A started :class:`MlflowServer` (``.url``: ``http://127.0.0.1:PORT``), stopped at the
    end."""
    server = MlflowServer(folder, admin_password)
    try:
        server.start()
        yield server
    finally:
        server.stop()
