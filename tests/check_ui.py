"""The MLflow UI in a real browser: ``make check-ui`` (or ``python tests/check_ui.py``).

Runs a tiny sweep in a temporary folder, starts ``python -m sweep ui`` there on a free port,
and loads the links it prints in headless Chromium. The rendered page must show MLflow's
"Model training" view listing the sweep's parent run by name, and the parent run's page
its trial runs. Screenshots of both pages are saved (``--out``, default
``outputs/check-ui/``). Exit code 0 when every check passes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.servers import free_port  # noqa: E402

STUDY = "uicheck"
SWEEP = ["multirun", f"sweep.study_name={STUDY}", "sweep.n_trials=2", "sweep.n_jobs=1",
         "train.nb_steps=300", "train.eval_interval=100", "train.eval_episodes=1",
         "train.test_episodes=1", "train.checkpoint_interval=0", "train.progress=false",
         "sweep.seeds_per_trial=1", "sweep.recheck_top_k=0", "sweep.register_best=false"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
TRAINING_VIEW = "Model registry"  # in the sidebar of the Model training view only
GENAI_VIEW = "Evaluation runs"  # in the sidebar of the GenAI view only


@dataclass
class Links:
    """What ``python -m sweep ui`` printed."""

    experiment: str
    sweep_name: str
    sweep: str
    log: str  # the server's log file


def chromium() -> str | None:
    """The Chromium (or Chrome) binary on PATH, or None."""
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    return next((found for name in names if (found := shutil.which(name))), None)


def project_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
            "PYTHONUNBUFFERED": "1"}


def tiny_sweep(folder: Path) -> None:
    """Two 300-step trials into ``folder``'s ./mlflow.db and ./multirun."""
    done = subprocess.run([sys.executable, "-m", "sweep", *SWEEP], cwd=folder,
                          env=project_env(), capture_output=True, text=True, timeout=300,
                          check=False)
    if done.returncode:
        raise AssertionError(f"the tiny sweep failed:\n{done.stderr[-3000:]}")


def start_ui(folder: Path, port: int) -> tuple[subprocess.Popen[str], Links]:
    """``python -m sweep ui --port PORT`` in ``folder`` (the command as the README spells
    it); the links it prints once serving."""
    proc = subprocess.Popen([sys.executable, "-m", "sweep", "ui", "--port", str(port)],
                            cwd=folder, env=project_env(), stdout=subprocess.PIPE,
                            stderr=(folder / "ui.err").open("w"), text=True)
    assert proc.stdout is not None
    found: dict[str, str] = {}
    deadline = time.monotonic() + 150
    for line in proc.stdout:  # ends when the process does
        if m := re.search(r"; log (\S+)\)$", line.rstrip()):
            found["log"] = m[1]
        elif m := re.match(r"experiment (\S+): (\S+)", line):
            found["experiment"] = m[2]
        elif m := re.match(r"latest sweep (\S+): (\S+)", line):
            found["sweep_name"], found["sweep"] = m[1], m[2]
            break
        if time.monotonic() > deadline:
            break
    if not {"sweep", "experiment", "log"} <= set(found):
        stop_ui(proc)
        raise AssertionError(f"sweep ui printed no links: {(folder / 'ui.err').read_text()}")
    return proc, Links(**found)


def stop_ui(proc: subprocess.Popen[str]) -> int:
    """Ctrl-C, as a user would; the exit code."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -9


def browse(browser: str, url: str, profile: Path, *extra: str) -> str:
    """Chromium's output for ``url`` after 20 s of virtual time (the DOM with --dump-dom)."""
    done = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra,
                           "--virtual-time-budget=20000", url],
                          capture_output=True, text=True, timeout=120, check=False)
    return done.stdout


def rendered(browser: str, url: str, profile: Path, needles: list[str], shot: Path,
             tries: int = 3) -> str:
    """The DOM of ``url`` once it holds every one of ``needles`` (a few tries), with a
    screenshot ``shot`` of the same page load; raise AssertionError otherwise."""
    shot.parent.mkdir(parents=True, exist_ok=True)
    dom = ""
    for _ in range(tries):
        dom = browse(browser, url, profile, "--dump-dom", f"--screenshot={shot}",
                     "--window-size=1400,900")
        if all(needle in dom for needle in needles):
            break
    else:
        missing = [needle for needle in needles if needle not in dom]
        raise AssertionError(f"{url}: the page lacks {missing} ({len(dom)} characters of DOM)")
    if not shot.is_file() or shot.stat().st_size == 0:
        raise AssertionError(f"no screenshot of {url}")
    return dom


def check(folder: Path, out: Path, browser: str) -> list[Path]:
    """The whole check in ``folder``; screenshots into ``out``; raise AssertionError if the
    UI does not show what it should."""
    folder.mkdir(parents=True, exist_ok=True)
    tiny_sweep(folder)
    html = folder / "multirun" / STUDY / "plots" / "optimization_history.html"
    assert html.is_file(), "the sweep wrote no interactive plots"
    proc, links = start_ui(folder, free_port())
    profile = folder / "chromium-profile"
    try:
        mode = stat.S_IMODE(os.stat(links.log).st_mode)
        assert mode == 0o600, f"the server's log {links.log} is readable by others: {mode:o}"
        shots = [out / "runs.png", out / "sweep.png"]
        dom = rendered(browser, links.experiment, profile, [links.sweep_name, TRAINING_VIEW],
                       shots[0])
        assert GENAI_VIEW not in dom, "the experiment opened in the GenAI view"
        rendered(browser, links.sweep, profile, [links.sweep_name, "trial-000", "trial-001"],
                 shots[1])
    finally:
        code = stop_ui(proc)
    assert code == 0, f"sweep ui exited {code} on Ctrl-C"
    return shots


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "check-ui",
                        help="folder for the screenshots")
    out = parser.parse_args().out.resolve()
    browser = chromium()
    if browser is None:
        print("error: chromium not found (make check-ui installs it)", file=sys.stderr)
        return 2
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="check-ui-") as tmp:
        try:
            shots = check(Path(tmp), out, browser)
        except AssertionError as err:
            print(f"check-ui: FAILED: {err}", file=sys.stderr)
            return 1
    print(f"check-ui: ok in {time.monotonic() - start:.0f} s: the Model training view lists "
          f"the sweep's parent run and its trials; screenshots: {' '.join(map(str, shots))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
