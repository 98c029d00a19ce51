"""Sweep benchmark: one sweep budget with and without pruning, on one and two workers.

    PYTHONPATH=.:src python bench/sweep.py [--trials 16] [overrides ...]

Runs three sweeps of the default search space through the real command line
(``python -m sweep multirun``), one after the other in this one run, each a fresh study with
the same seed in its own temporary folder:

    pruned   sweep.pruner=median  sweep.n_jobs=2   (the default sweep)
    full     sweep.pruner=none    sweep.n_jobs=2
    serial   sweep.pruner=none    sweep.n_jobs=1

and prints wall time, CPU time (all processes of the sweep), env steps trained, trials
pruned and the best value of each, then the ratios full/pruned (what pruning saves) and
serial/full (what a second worker gives). "cores" is CPU time / wall time: a second worker
only helps when a second core is free, so the load average is printed before each sweep.
Extra arguments are overrides for all three (e.g. ``train.nb_steps=10000``).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {  # name -> overrides
    "pruned": ["sweep.pruner=median", "sweep.n_jobs=2"],
    "full": ["sweep.pruner=none", "sweep.n_jobs=2"],
    "serial": ["sweep.pruner=none", "sweep.n_jobs=1"],
}


@dataclass
class Result:
    name: str
    seconds: float
    cpu: float
    steps: int
    complete: int
    pruned: int
    failed: int
    best: float
    median: float


def run_variant(name: str, overrides: list[str], extra: list[str], trials: int,
                folder: Path) -> Result:
    """One sweep in ``folder``: wall time of the command, and what its study holds."""
    folder.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    args = [sys.executable, "-m", "sweep", "multirun", f"sweep.n_trials={trials}",
            "sweep.study_name=bench", *overrides, *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True,
                          check=False)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the command and its workers
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    (folder / "stdout.txt").write_text(proc.stdout)
    (folder / "stderr.txt").write_text(proc.stderr)
    if proc.returncode:
        sys.exit(f"{name}: exit code {proc.returncode}\n{proc.stderr[-3000:]}")
    storage = JournalStorage(JournalFileBackend(str(folder / "multirun/bench/study.log")))
    trials_ = optuna.load_study(study_name="bench", storage=storage).trials
    values = [t.value for t in trials_ if t.state == TrialState.COMPLETE]
    return Result(name, seconds, cpu, sum(t.user_attrs.get("nb_steps", 0) for t in trials_),
                  len(values), sum(t.state == TrialState.PRUNED for t in trials_),
                  sum(t.state == TrialState.FAIL for t in trials_),
                  max(values, default=float("nan")),
                  statistics.median(values) if values else float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16, help="trials per sweep")
    parser.add_argument("--keep", action="store_true", help="keep the sweeps' folders")
    parser.add_argument("overrides", nargs="*", help="overrides for every sweep")
    opts = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    print(f"{opts.trials} trials per sweep, overrides: {' '.join(opts.overrides) or '-'}; "
          f"cores: {os.cpu_count()}; folders in {root}", flush=True)
    results = {}
    for name, overrides in VARIANTS.items():
        load = os.getloadavg()[0]
        results[name] = r = run_variant(name, overrides, opts.overrides, opts.trials,
                                        root / name)
        print(f"{name:<7} {' '.join(overrides):<36} load {load:4.1f}  {r.seconds:6.1f} s  "
              f"cpu {r.cpu:6.1f} s ({r.cpu / r.seconds:.2f} cores)  {r.steps:>8,} steps  "
              f"complete {r.complete:2d}  pruned {r.pruned:2d}  failed {r.failed}  "
              f"best {r.best:6.1f}  median {r.median:6.1f}", flush=True)
    p, f, s = results["pruned"], results["full"], results["serial"]
    print(f"pruning  (full / pruned, 2 workers): wall time {f.seconds / p.seconds:.2f}x, "
          f"cpu time {f.cpu / p.cpu:.2f}x, env steps {f.steps / max(p.steps, 1):.2f}x; "
          f"best {f.best:.1f} vs {p.best:.1f}")
    print(f"parallel (1 worker / 2 workers, no pruning): wall time "
          f"{s.seconds / f.seconds:.2f}x for {s.steps:,} vs {f.steps:,} steps; "
          f"throughput {f.steps / f.seconds / (s.steps / s.seconds):.2f}x")
    if not opts.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
