"""Does the stacked trainer learn as the fast agent's own graph does? One config, many seeds.

    PYTHONPATH=.:src python bench/paths.py [--seeds 10] [--first 2000000000] [overrides ...]

Issue #18's learning check: a config (default: the default sweep's config with the winner
of bench/robust.py's 2026-12-02 sweep, trial 2) trained from scratch on ``--seeds`` seeds
by both paths of the fast agent, two seeds side by side as a trial trains them:

- ``own``: each seed in its own graph, one session call per train step (``stacked=False``,
  the path before rltrain/stacked.py);
- ``stacked``: the seeds' train steps in one session call (what trials, the recheck and
  ``evaluate`` use).

The stack runs the own graph's kernels (tests/test_stacked.py compares them step by step),
so a seed should give the same episodes on both paths; this checks it on whole runs, where
at least the distribution must match. Prints each seed's results, then per path the delivered
agent's test (``train.test_episodes`` greedy episodes) over the seeds: solved n/N with its
Wilson interval and the mean with its t interval, and the final weights' the same way.
The two paths run one after the other, each in this process; the seeds default to the
range ``bench/robust.py`` uses (no sweep trial or recheck trains them).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from rltrain.config import compose_config, reward_threshold  # noqa: E402
from sweep.engine.stats import summarize  # noqa: E402

WINNER = ["agent.impl=fast", "train.nb_steps=50000", "train.eval_interval=2000",
          "train.eval_episodes=10", "train.test_episodes=20", "train.keep_best=true",
          "train.checkpoint_interval=0", "train.progress=false", "agent.model.units=64",
          "agent.model.layers=2", "agent.memory.limit=20000", "agent.policy.nb_steps=2000",
          "agent.policy.value_min=0.0893990536648147", "agent.target_model_update=0.02",
          "agent.lr=0.0010555608309180402", "agent.batch_size=64"]


def tests(stacked: bool, seeds: list[int], overrides: list[str], folder: Path
          ) -> tuple[list[float], list[float]]:
    """Each seed's delivered-agent test and final-weights test, two seeds at a time."""
    from rltrain.train import Learner, train_together

    delivered, final = [], []
    for i in range(0, len(seeds), 2):
        learners = [Learner(compose_config([*overrides, f"seed={s}"]), folder / str(s))
                    for s in seeds[i:i + 2]]
        try:
            for r in train_together(learners, stacked=stacked):
                delivered.append(r.test_mean_reward)
                final.append(r.final_test_mean_reward)  # the delivered one's without keep_best
        finally:
            for learner in learners:
                learner.close()
        print(f"  {'stacked' if stacked else 'own':7s} seeds {seeds[i:i + 2]}: delivered "
              f"{delivered[-len(learners):]}, final {final[-len(learners):]}", flush=True)
    return delivered, final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first", type=int, default=2_000_000_000)
    parser.add_argument("overrides", nargs="*", help="config overrides after the winner's")
    args = parser.parse_args()
    overrides = [*WINNER, *args.overrides]
    seeds = list(range(args.first, args.first + args.seeds))
    threshold = reward_threshold(compose_config(overrides).env)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  seeds {seeds[0]}..{seeds[-1]}  "
          f"solved: test >= {threshold:g}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for stacked in (False, True):
            name = "stacked" if stacked else "own"
            delivered, final = tests(stacked, seeds, overrides, Path(tmp) / name)
            rows.append((name, summarize(delivered, threshold), summarize(final, threshold)))
    for name, delivered, final in rows:
        print(f"{name:7s}  delivered: {delivered.line()}\n         final weights: {final.line()}")


if __name__ == "__main__":
    main()
