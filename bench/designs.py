"""Two designs for several seeds per trial, measured side by side on the same budget.

    python bench/designs.py                       # 12 trials x 3 seeds x 30,000 steps each
    python bench/designs.py --trials 8 --steps 20000

- ``lockstep``: the trial's seeds train side by side in one worker; after each round of
  evaluations the seeds' aggregate goes to the median pruner (``sweep.pruner=median``);
- ``wilcoxon``: the seeds train one after another; each seed's score is one instance for
  Optuna's WilcoxonPruner (``sweep.pruner=wilcoxon``).

Both run the default search space with the same sweep seed, trial budget and objective,
no recheck, in a scratch folder. Printed per design: wall and CPU time, environment steps
trained, trials complete and pruned, the best objective, and the best config's mean
objective over its seeds. Finishing sooner with as good a winner is the better design.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESIGNS = {"lockstep": ["sweep.pruner=median"], "wilcoxon": ["sweep.pruner=wilcoxon"]}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30000)
    args = parser.parse_args()
    cwd = Path(tempfile.mkdtemp(prefix="designs-"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    sys.path[:0] = [str(ROOT), str(ROOT / "src")]
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    rows = []
    for name, extra in DESIGNS.items():
        common = [f"sweep.study_name={name}", f"sweep.n_trials={args.trials}",
                  f"sweep.seeds_per_trial={args.seeds}", f"train.nb_steps={args.steps}",
                  "sweep.recheck_top_k=0", *extra]
        start, cpu = time.perf_counter(), children_cpu()
        subprocess.run([sys.executable, "-m", "sweep", "multirun", *common], cwd=cwd, env=env,
                       check=True, stdout=subprocess.DEVNULL)
        wall, cpu = time.perf_counter() - start, children_cpu() - cpu
        study = optuna.load_study(study_name=name, storage=JournalStorage(
            JournalFileBackend(str(cwd / "multirun" / name / "study.log"))))
        trials = study.trials
        steps = sum(t.user_attrs.get("nb_steps", 0) for t in trials)
        states = [t.state.name for t in trials]
        rows.append((name, wall, cpu, steps, states.count("COMPLETE"), states.count("PRUNED"),
                     study.best_value))
        print(f"{name}: {wall:.0f} s", flush=True)
    print(f"\n{'design':9} {'wall':>7} {'cpu':>7} {'env steps':>10} {'complete':>8} "
          f"{'pruned':>6} {'best':>6}")
    for name, wall, cpu, steps, done, pruned, best in rows:
        print(f"{name:9} {wall:6.0f}s {cpu:6.0f}s {steps:10,d} {done:8d} {pruned:6d} {best:6.1f}")
    (base, *_), (other, *_) = rows[0][1:], rows[1][1:]
    print(f"wall time wilcoxon / lockstep: {other / base:.2f}x")


if __name__ == "__main__":
    main()
