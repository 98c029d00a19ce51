"""Every command of the README's (and docs/'s) bash blocks runs as a user types it, in order,
in a scratch copy of the checkout, and exits 0.

Only the environment makes it cheap: ``SWEEP_OVERRIDES`` appends tiny budgets to every
train/multirun/worker line, ``HOME`` is a scratch folder, pip installs into a scratch folder
(``PIP_TARGET``). Placeholders a user replaces are replaced (``DBHOST``, ``MLFLOWHOST``,
``RUN_ID``, ``PGPASSWORD=...``) with a real PostgreSQL cluster, a real MLflow server and the
newest run. Servers (``sweep ui``, ``mlflow server``, ``optuna-dashboard``) run until they
answer on their port, then are stopped. ``make test`` is not run: it is this suite.
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT
from tests.servers import PASSWORD, cluster, mlflow_server

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = ("make test",)  # the suite itself
TINY = ("train.nb_steps=300 train.eval_interval=300 train.eval_episodes=1 train.test_episodes=1 "
        "train.checkpoint_interval=150 train.log_interval=1 train.progress=false "
        "agent.memory.limit=1000 agent.policy.nb_steps=200 agent.nb_steps_warmup=50 "
        "agent.batch_size=16 env.atari.max_num_frames_per_episode=1000 "
        "env.kwargs.max_episode_steps=100 "  # gymnasium.make's own time limit: short episodes
        "sweep.n_trials=2 sweep.n_jobs=1 sweep.seeds_per_trial=1 sweep.recheck_top_k=1 "
        "sweep.recheck_seeds=1 sweep.pruner=none")
SERVER = re.compile(r"(^|\s)(-m sweep ui(?!.*tracking\.uri=http)|mlflow server|optuna-dashboard)")
DEFAULT_PORTS = {"ui": 5000, "mlflow server": 5000, "optuna-dashboard": 8080}


def bash_blocks(path: Path) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", path.read_text(), re.S | re.M)


def commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def all_commands() -> list[str]:
    return [c for path in DOCS for block in bash_blocks(path) for c in commands(block)]


@dataclass
class Shell:
    """One user's shell: the folder, exported variables and placeholders carry over."""

    home: Path
    cwd: Path
    env: dict[str, str]
    places: dict[str, str] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def fill(self, command: str) -> str:
        for placeholder, value in self.places.items():
            command = command.replace(placeholder, value)
        if "RUN_ID" in command:
            command = command.replace("RUN_ID", newest_run(self.cwd))
        return command

    def script(self, command: str) -> str:
        state = self.home / ".state"
        return (f"[ -f {state} ] && . {state}\ncd {shlex.quote(str(self.cwd))}\n{command}\n"
                f"rc=$?\nexport -p > {state}.new && pwd > {state}.cwd && mv {state}.new "
                f"{state}\nexit $rc\n")

    def run(self, command: str) -> None:
        line = self.fill(command)
        stdin = f"{PASSWORD}\n{PASSWORD}\n" if "--pwprompt" in line else None
        if SERVER.search(line):
            return self.serve(line)
        start = time.monotonic()
        done = subprocess.run(["bash", "-c", self.script(line)], env=self.env, input=stdin,
                              capture_output=True, text=True, timeout=900, check=False,
                              start_new_session=True)
        self.log.append(f"{time.monotonic() - start:6.1f} s  {command}")
        assert done.returncode == 0, (f"README command failed: {command}\n"
                                      f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        self.cwd = Path((self.home / ".state.cwd").read_text().strip())

    def serve(self, line: str) -> None:
        """Start a server command, wait until its port answers, stop its process group."""
        port_given = re.search(r"--port[ =](\d+)", line)
        name = next(n for n in DEFAULT_PORTS if n in line)
        port = int(port_given.group(1)) if port_given else DEFAULT_PORTS[name]
        out = self.home / "server.log"
        with port_held(port), out.open("w") as log:
            proc = subprocess.Popen(["bash", "-c", self.script(line)], env=self.env,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                wait_http(port, proc, out)
            finally:
                stop(proc)
        self.log.append(f"served on {port}: {line}")


@contextmanager
def port_held(port: int) -> Iterator[None]:
    """Hold a fixed port against the suite's other workers: pages that serve on one port
    (``sweep ui`` and ``mlflow server`` on 5000) take turns instead of failing with
    "in use"."""
    with open(Path(tempfile.gettempdir()) / f"rltrain-tests-port-{port}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server's process group (it may have stopped on its own already)."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_http(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            pass
        assert proc.poll() is None, f"server stopped: {log.read_text()[-3000:]}"
        time.sleep(0.5)
    raise AssertionError(f"no answer on port {port}: {log.read_text()[-3000:]}")


def newest_run(folder: Path) -> str:
    """The newest finished training run (one that has trained weights) of ./mlflow.db."""
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(ids, "attributes.status = 'FINISHED' and params.`agent.impl` != ''",
                              order_by=["attributes.start_time DESC"], max_results=1)
    assert runs, f"no finished training run in {folder} for RUN_ID"
    return runs[0].info.run_id


@contextmanager
def shell(tmp_path: Path, services: bool) -> Iterator[Shell]:
    """A scratch checkout (the venv linked, not copied), a scratch home, and, ``services``,
    the servers the placeholders name."""
    checkout, home, site = tmp_path / "checkout", tmp_path / "home", tmp_path / "site"
    shutil.copytree(ROOT, checkout, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "outputs", "multirun", "mlruns", "mlflow.db", "mlartifacts",
        "build", "__pycache__", ".pytest_cache", ".ruff_cache"))
    (checkout / ".venv").symlink_to(ROOT / ".venv")
    stamp = (ROOT / ".venv" / ".installed").stat().st_mtime  # make's mark of a built venv
    for name in ("pyproject.toml", "requirements.lock"):  # the files it was built from
        os.utime(checkout / name, (stamp - 1, stamp - 1))  # (make test built it just now)
    home.mkdir()
    venv_bin = ROOT / ".venv" / "bin"
    env = {**{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_TARGET")},
           "HOME": str(home), "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
           "VIRTUAL_ENV": str(ROOT / ".venv"), "SWEEP_OVERRIDES": TINY,
           # pip installs into a scratch folder, without dependencies (the venv has them)
           # and without build isolation (no download of setuptools): "0" means off
           "PIP_TARGET": str(site), "PIP_NO_DEPS": "yes", "PIP_NO_BUILD_ISOLATION": "0",
           # the scratch checkout's code, not the venv's editable link to the real one
           "PYTHONPATH": os.pathsep.join(map(str, [checkout, checkout / "src", site])),
           "MLFLOW_ENABLE_TELEMETRY": "false",
           # the README's own `mlflow server`: without MLflow's GenAI job runner (seven
           # processes that serve nothing a sweep uses; `sweep ui` turns it off itself)
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with ExitStack() as stack:
        places = {}
        if services:
            pg = stack.enter_context(cluster())
            tracking = stack.enter_context(mlflow_server(tmp_path / "tracking"))
            env |= {"PGHOST": str(pg.sockets), "PGPORT": str(pg.port), "PGUSER": "postgres"}
            places = {"DBHOST": f"127.0.0.1:{pg.port}",
                      "MLFLOWHOST:5000": tracking.url.removeprefix("http://"),
                      "PGPASSWORD=...": f"PGPASSWORD={PASSWORD}"}
        yield Shell(home=home, cwd=checkout, env=env, places=places)


def test_some_page_sweeps() -> None:
    assert any("python -m sweep multirun" in c for c in all_commands()), "no commands found"


@pytest.mark.parametrize("page", DOCS, ids=[page.name for page in DOCS])  # a unit each (conftest)
def test_every_command_of_a_page_runs_as_written(page: Path, tmp_path: Path) -> None:
    """A page's commands, in order, in a fresh checkout: each page stands on its own."""
    found = [c for block in bash_blocks(page) for c in commands(block)]
    needs = any(p in c for c in found for p in ("DBHOST", "MLFLOWHOST", "PGPASSWORD"))
    with shell(tmp_path, services=needs) as user:
        try:
            for command in found:
                if command.split("#", 1)[0].strip() not in NOT_RUN:
                    user.run(command)
        finally:
            print("\n".join(user.log))
