"""Does the default sweep pick a config that solves CartPole-v1 on seeds it never saw?

    python bench/robust.py                    # both sweeps, then 10 fresh seeds each (~25 min)
    python bench/robust.py --only new         # the default sweep alone

Runs, one after the other in a scratch folder (its own journal and MLflow store):

- ``new``: the default sweep as ``make run`` runs it (several seeds per trial, the
  objective, the recheck of the leaders, keep_best);
- ``old``: the single-seed objective it replaces (one seed per trial, the last
  evaluation, no recheck, the final weights delivered), otherwise the same search space;

then ``python -m sweep evaluate best seeds=10`` on each winner: fresh seeds that no trial
and no recheck used, each trained from scratch with the config the study records. A seed is
solved when its delivered agent's test (``train.test_episodes`` = 20 greedy episodes,
not used to pick the agent) reaches the env's threshold (475). Prints, side by side, the
sweep's wall time, the solved seeds of the delivered agents and of the final weights, and
their mean test reward with 95% intervals.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from sweep.engine.stats import summarize  # noqa: E402

VARIANTS = {
    "new": [],
    "old": ["sweep.seeds_per_trial=1", "sweep.seed_score=final", "sweep.recheck_top_k=0",
            "train.keep_best=false"],
}


def sweep(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    return subprocess.run([sys.executable, "-m", "sweep", *args], cwd=cwd, env=env, text=True,
                          stdout=subprocess.PIPE, check=True)


def fresh_seed_tests(cwd: Path, run_id: str) -> tuple[list[float], list[float]]:
    """Per fresh seed that ``evaluate`` trained ``run_id``'s config on: the delivered
    agent's test and the final weights' test."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
    experiment = client.get_run(run_id).info.experiment_id
    runs = client.search_runs([experiment], f"tags.evaluates = '{run_id}' and "
                                            "tags.`evaluate.seed` != ''")
    runs.sort(key=lambda r: int(r.data.params["seed"]))
    delivered = [r.data.metrics["test/mean_reward"] for r in runs]
    final = [r.data.metrics.get("test/final_weights_mean_reward",
                                r.data.metrics["test/mean_reward"]) for r in runs]
    return delivered, final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(VARIANTS), action="append")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: temp)")
    args = parser.parse_args()
    cwd = args.dir or Path(tempfile.mkdtemp(prefix="robust-"))
    cwd.mkdir(parents=True, exist_ok=True)
    print(f"scratch folder: {cwd}", flush=True)
    rows = []
    for name in args.only or list(VARIANTS):
        study = [f"sweep.study_name=robust-{name}"]
        start = time.perf_counter()
        sweep(cwd, "multirun", *study, *VARIANTS[name])
        minutes = (time.perf_counter() - start) / 60
        best = json.loads(sweep(cwd, "best", *study, "--json").stdout)
        sweep(cwd, "evaluate", "best", *study, f"seeds={args.seeds}")
        delivered, final = fresh_seed_tests(cwd, best["run_id"])
        rows.append((name, minutes, best, summarize(delivered, 475), summarize(final, 475)))
        print(f"{name}: sweep {minutes:.1f} min, best trial {best['trial']}; delivered "
              f"{[round(v, 1) for v in delivered]}; final weights {[round(v, 1) for v in final]}",
              flush=True)
    print(f"\n{'':4}  {'sweep':>9}  {'best':>4}  delivered agent on {args.seeds} fresh seeds"
          f"{'':24}final weights")
    for name, minutes, best, delivered, final in rows:
        print(f"{name:4}  {minutes:6.1f} min  {best['trial']:4d}  {delivered.line():54}  "
              f"{final.line()}")


if __name__ == "__main__":
    main()
