"""Storage benchmark: trials per hour on PostgreSQL next to the local journal file.

    PYTHONPATH=.:src python bench/distributed.py [--trials 8] [overrides ...]

Starts a throwaway PostgreSQL server (``tests/servers.py``), then runs four sweeps through
the real command line (``python -m sweep multirun``), one after the other, each a fresh study
with the same seed and budget in its own temporary folder (MLflow: a local store there):

    journal  1 worker    journal  2 workers    postgresql  1 worker    postgresql  2 workers

and prints trials per hour with the ratio PostgreSQL / journal, twice: over the command's
wall time (process start-up and the summary included), and over the trials alone (first
trial's start to last trial's end). PostgreSQL adds heartbeats, the claim lock and network
round trips; if the storage were the bottleneck, the ratio would fall well below 1 and get
worse with 2 workers. Last, the storage alone: ``--ops`` empty trials (ask, a heartbeat,
two reports, tell: what a trial costs the storage) in one process, as trials per hour.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from sweep.engine.settings import plan  # noqa: E402
from sweep.engine.storage import Heartbeat, open_storage  # noqa: E402
from tests.servers import postgres  # noqa: E402

BUDGET = ["train.nb_steps=2000", "train.eval_interval=500", "train.eval_episodes=2",
          "train.test_episodes=2", "train.checkpoint_interval=0", "agent.memory.limit=2000",
          "sweep.pruner=none", "train.progress=false", "sweep.seeds_per_trial=1",
          "sweep.recheck_top_k=0", "sweep.register_best=false"]


def sweep(storage: str, workers: int, trials: int, extra: list[str],
          folder: Path) -> tuple[float, float]:
    """Wall seconds of one sweep's command and of its trials (first start to last end);
    exits if it fails or leaves a trial unfinished."""
    folder.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    name = folder.name  # one study per sweep, also on the shared PostgreSQL server
    args = [sys.executable, "-m", "sweep", "multirun", f"sweep.study_name={name}",
            f"sweep.n_trials={trials}", f"sweep.n_jobs={workers}",
            f"tracking.uri=sqlite:///{folder / 'mlflow.db'}", *BUDGET, *extra]
    if storage:
        args.append(f"sweep.storage={storage}")
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"exit code {proc.returncode}\n{proc.stderr[-3000:]}")
    done = study(storage, folder).trials
    if len(done) != trials or any(t.state != TrialState.COMPLETE for t in done):
        sys.exit(f"not {trials} complete trials in {folder}: {[t.state for t in done]}")
    first = min(t.datetime_start for t in done)
    last = max(t.datetime_complete for t in done)
    return seconds, (last - first).total_seconds()


def study(storage: str, folder: Path) -> optuna.Study:
    name = folder.name
    args = [f"sweep.storage={storage or folder / f'multirun/{name}/study.log'}",
            f"sweep.study_name={name}"]
    return optuna.load_study(study_name=name, storage=open_storage(plan(args)))


def storage_alone(storage: str, n: int) -> float:
    """Seconds for ``n`` empty trials: claim (ask), two reports, tell."""
    s = open_storage(plan([f"sweep.storage={storage}", "sweep.study_name=ops"]))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    ops = optuna.create_study(study_name="ops", storage=s, direction="maximize")
    start = time.perf_counter()
    for i in range(n):
        trial = ops.ask()
        Heartbeat(s, trial, 1).beat()  # what a worker writes at claim time (database only)
        trial.report(float(i), 1000)
        trial.report(float(i), 2000)
        ops.tell(trial, float(i))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="trials per sweep")
    parser.add_argument("--ops", type=int, default=200, help="empty trials, storage alone")
    parser.add_argument("overrides", nargs="*", help="overrides for every sweep")
    opts = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    print(f"{opts.trials} trials per sweep ({' '.join(BUDGET + opts.overrides)}); "
          f"{os.cpu_count()} cores", flush=True)
    rates: dict[tuple[str, int], tuple[float, float]] = {}
    try:
        with postgres() as url:
            for name, storage in (("journal", ""), ("postgresql", url)):
                for workers in (1, 2):
                    load = os.getloadavg()[0]
                    wall, trials = sweep(storage, workers, opts.trials, opts.overrides,
                                         root / f"{name}-{workers}")
                    rates[name, workers] = (opts.trials / wall * 3600,
                                            opts.trials / trials * 3600)
                    print(f"  {name:<10} {workers} worker(s): command {wall:6.1f} s, trials "
                          f"{trials:6.1f} s (load before {load:.1f})", flush=True)
            alone = {name: opts.ops / storage_alone(storage, opts.ops) * 3600 for name, storage
                     in (("journal", str(root / "ops.log")), ("postgresql", url))}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("\ntrials/hour   over the command's wall time         over the trials alone")
    print("              journal  postgresql  ratio        journal  postgresql  ratio")
    for workers in (1, 2):
        (jw, jt), (pw, pt) = rates["journal", workers], rates["postgresql", workers]
        print(f"{workers} worker(s)   {jw:7.0f}  {pw:10.0f}  {pw / jw:5.2f}        "
              f"{jt:7.0f}  {pt:10.0f}  {pt / jt:5.2f}")
    print(f"storage alone (ask, heartbeat, 2 reports, tell; 1 process): journal "
          f"{alone['journal']:,.0f}, postgresql {alone['postgresql']:,.0f} trials/hour")


if __name__ == "__main__":
    main()
