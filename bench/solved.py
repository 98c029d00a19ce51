"""Does an env group's default sweep name an agent that solves on seeds it never saw?

    python bench/solved.py env=lunarlander          # its default sweep, then 10 fresh seeds
    python bench/solved.py env=acrobot --seeds 10
    python bench/solved.py                          # CartPole-v1 (the default env group)
    python bench/solved.py env=mountaincar sweep.n_trials=8   # any multirun override

In a scratch folder (its own journal and MLflow store), one after the other:

1. ``python -m sweep multirun OVERRIDES`` as a user runs it, timed (the recheck included);
2. ``python -m sweep best OVERRIDES --json``: the winner and its config;
3. ``python -m sweep evaluate best seeds=N OVERRIDES``: the winner's config trained from
   scratch on N fresh seeds that no trial and no recheck used.

Prints one row of docs/results.md's table: the sweep's wall time, the delivered agents'
test (``train.test_episodes`` greedy episodes, not used to pick the agent) as solved n/N
with its Wilson interval and the mean with its t interval, the final weights' solve rate,
and the winner's searched keys. Each row names the commit it ran on.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from robust import fresh_seed_tests, sweep  # noqa: E402  (bench/robust.py)

from sweep.engine.leaders import threshold_of  # noqa: E402
from sweep.engine.settings import plan  # noqa: E402
from sweep.engine.stats import summarize  # noqa: E402


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                         capture_output=True, check=False).stdout.strip()
    return out or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="multirun overrides: env=NAME, sweep.* ...")
    parser.add_argument("--seeds", type=int, default=10, help="fresh seeds (default 10)")
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: temp)")
    args = parser.parse_args()
    cwd = args.dir or Path(tempfile.mkdtemp(prefix="solved-"))
    cwd.mkdir(parents=True, exist_ok=True)
    goal = threshold_of(plan(args.overrides))  # the env the sweep's trials train on
    print(f"scratch folder: {cwd}; commit {commit()}; solved at >= {goal:g}", flush=True)
    start = time.perf_counter()
    sweep(cwd, "multirun", *args.overrides)
    minutes = (time.perf_counter() - start) / 60
    best = json.loads(sweep(cwd, "best", *args.overrides, "--json").stdout)
    start = time.perf_counter()
    sweep(cwd, "evaluate", "best", f"seeds={args.seeds}", *args.overrides)
    evaluate_minutes = (time.perf_counter() - start) / 60
    delivered, final = fresh_seed_tests(cwd, best["run_id"])
    got, kept = summarize(delivered, goal), summarize(final, goal)
    print(f"\nsweep {minutes:.1f} min (python -m sweep multirun {' '.join(args.overrides)}), "
          f"best trial {best['trial']}; evaluate {evaluate_minutes:.1f} min")
    print(f"delivered agent, {got.n} fresh seeds: {got.line()}")
    print(f"  per seed: {[round(v, 1) for v in delivered]}")
    print(f"final weights: {kept.line()}")
    print(f"  per seed: {[round(v, 1) for v in final]}")
    print("winner's searched keys: " + ", ".join(f"{k}={v}" for k, v in best["params"].items()))
    print(f"train it: {best['command']}")


if __name__ == "__main__":
    main()
