"""The default sweep against stock keras-rl2's one tutorial agent, side by side in one run.

    PYTHONPATH=.:src python bench/sweep_vs_stock.py [--rounds 1]

Issue #18's yardstick: ``python -m sweep multirun`` with every default (16 trials x 2 seeds
x 50,000 steps, 2 workers, pruning, the recheck of 3 leaders on 4 fresh seeds, the winner
registered) should take less wall time than stock keras-rl2 takes to train the tutorial's
one agent (``python -m sweep agent.impl=keras-rl``: 50,000 steps, 5 test episodes). Both run
through the real command line, each in a fresh temporary folder (its own MLflow store and
study), one after the other, alternating over ``--rounds``; prints each wall time and the
ratio sweep / stock. Run it alone on the machine: a second job skews both.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "stock": ["agent.impl=keras-rl", "train.progress=false"],
    "sweep": ["multirun"],
}


def timed(name: str, show: bool = False) -> float:
    """Wall seconds of one run of ``name``'s command in a fresh folder (it must succeed);
    ``show``: print what it printed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    env.pop("SWEEP_OVERRIDES", None)  # the real budgets
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as folder:
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "sweep", *RUNS[name]], cwd=folder,
                              env=env, capture_output=True, text=True, check=False)
        seconds = time.monotonic() - start
    if done.returncode:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    if show:
        print(done.stdout, flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--show", action="store_true", help="print what the sweep printed")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True, check=False).stdout.strip()
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  commit {commit}  load {os.getloadavg()[0]:.1f}")
    for r in range(args.rounds):
        order = ["stock", "sweep"] if r % 2 == 0 else ["sweep", "stock"]
        seconds = {}
        for name in order:
            seconds[name] = timed(name, args.show and name == "sweep")
            print(f"round {r + 1}  {name:5}  {seconds[name]:7.1f} s  "
                  f"({' '.join(['python -m sweep', *RUNS[name]])})", flush=True)
        print(f"round {r + 1}  sweep / stock = {seconds['sweep'] / seconds['stock']:.2f} "
              "(goal: < 1)", flush=True)


if __name__ == "__main__":
    main()
