"""``python -m sweep ui``: serve the runs in MLflow's UI and print where to look.

    python -m sweep ui                          # mlflow ui on ./mlflow.db, http://127.0.0.1:5000
    python -m sweep ui --port 5001              # another port
    python -m sweep ui tracking.uri=http://HOST:5000    # a tracking server: only the links

Links open MLflow's "Model training" view: the experiment's runs and the latest sweep's
parent run (tag ``sweep.role=parent``, newest start). Ctrl-C stops the server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rltrain.config import ConfigError, compose_config, mask_url
from rltrain.urls import DEFAULT_STORE
from sweep.commands import Command
from sweep.engine.preflight import check_tracking


@dataclass
class SweepRun:
    """A sweep's parent run, as the UI links to it."""

    experiment_id: str
    run_id: str
    name: str


def latest_sweep(uri: str) -> SweepRun | None:
    """The newest parent run of any sweep in the store, or None."""
    from rltrain.tracking import client_for

    client = client_for(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return None
    runs = client.search_runs(ids, "tags.`sweep.role` = 'parent'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        return None
    info = runs[0].info
    return SweepRun(info.experiment_id, info.run_id, info.run_name or "")


def experiments(uri: str, first: str) -> list[tuple[str, str]]:
    """(name, id) of the store's experiments, ``first`` first (MLflow's empty Default left out)."""
    from rltrain.tracking import client_for

    found = [(e.name, e.experiment_id) for e in client_for(uri).search_experiments()
             if e.name != "Default"]
    return sorted(found, key=lambda item: (item[0] != first, item[0]))


def links(uri: str, base: str, experiment: str) -> list[str]:
    """Lines with each experiment's run list (``experiment`` first: one per env group,
    keras-rl-cartpole, keras-rl-acrobot ...) and the latest sweep's parent run."""
    from rltrain.links import experiment_url, run_url

    lines = [f"experiment {name}: {experiment_url(base, exp_id)}"
             for name, exp_id in experiments(uri, experiment)]
    sweep = latest_sweep(uri)
    if sweep is not None:
        lines.append(f"latest sweep {sweep.name}: "
                     f"{run_url(base, sweep.experiment_id, sweep.run_id)}")
    return lines or [f"no runs yet in {mask_url(uri) or DEFAULT_STORE}: {base}"]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_server(store: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``mlflow ui`` (this Python's) on 127.0.0.1:``port``, one worker, output to ``log``.
    The store reaches it in its environment (``MLFLOW_BACKEND_STORE_URI``, which only this
    user can read), not on its command line, which every user of the machine sees in ``ps``:
    a database URI holds a password. MLflow's GenAI job runner (seven more processes, each
    importing MLflow) is off unless the user's environment turns it on: runs need none."""
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ,
           "MLFLOW_BACKEND_STORE_URI": store}
    with log.open("wb") as out:
        return subprocess.Popen(  # its own process group: stopped whole (see stop)
            [sys.executable, "-m", "mlflow", "ui",
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)


def wait_ready(proc: subprocess.Popen[bytes], base: str, log: Path, timeout: float = 120) -> None:
    """Block until the server answers ``/health``; ConfigError if it dies or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise ConfigError("mlflow ui stopped at start: " + " | ".join(tail))
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    stop(proc)
    raise ConfigError(f"mlflow ui did not answer at {base} within {timeout:.0f} s (log: {log})")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server's whole process group: ``mlflow ui`` runs uvicorn, a job runner and
    huey consumers, which outlive it when only it is stopped. Ask (SIGTERM), then insist
    (a graceful shutdown may wait on a browser's keep-alive connections)."""
    for sig, seconds in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):  # the group is gone already
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:  # the leader is gone; make sure its children are too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        return


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(cmd: Command) -> int:
    """Start ``mlflow ui`` on the local store (or, for a tracking server, just print the
    links); print the links; serve until Ctrl-C."""
    from rltrain.links import ui_base

    check_tracking(cmd.tracking_uri)
    ignored = [o for o in cmd.overrides if not o.lstrip("+~").startswith(("tracking.", "env="))]
    if ignored:
        print(f"note: ui ignores {' '.join(mask_url(o) for o in ignored)}", file=sys.stderr)
    cfg = compose_config([o for o in cmd.overrides if o not in ignored])
    uri, experiment = cfg.tracking.uri, cfg.tracking.experiment
    if uri.startswith(("http://", "https://")):
        from rltrain.tracking import check_server

        check_server(uri)
        print("\n".join(links(uri, ui_base(uri), experiment)), flush=True)
        return 0
    store = uri or DEFAULT_STORE
    if not port_free(cmd.port):
        raise ConfigError(f"--port {cmd.port}: in use on 127.0.0.1; pass another port")
    base = ui_base(store, f"http://127.0.0.1:{cmd.port}")
    fd, name = tempfile.mkstemp(prefix="sweep-ui-", suffix=".log")  # new, mode 0600: its owner's
    os.close(fd)
    log = Path(name)
    proc = start_server(store, cmd.port, log)
    signal.signal(signal.SIGTERM, _interrupt)  # a terminated ui stops its server too
    # Ctrl-C too, even when started with SIGINT ignored (a background job of a script)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        lines = links(store, base, experiment)  # while the server starts
        wait_ready(proc, base, log)
        print(f"MLflow UI for {mask_url(store)} at {base} (Ctrl-C stops it; log {log})")
        print("\n".join(lines), flush=True)
        code = proc.wait()
    except KeyboardInterrupt:
        stop(proc)
        print("mlflow ui stopped", file=sys.stderr)
        return 0
    finally:
        if proc.poll() is None:
            stop(proc)
    if code:
        print(f"error: mlflow ui exited with code {code} (log: {log})", file=sys.stderr)
    return code

