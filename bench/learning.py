"""Does the fast agent learn like stock keras-rl2? Both on the tutorial config, several seeds.

    python bench/learning.py [--seeds 0 1 2] [--steps 50000] [--env CartPole-v0]

For each seed and implementation it trains the tutorial config (CartPole-v0, 50,000
steps, greedy evaluation of 5 episodes every 5,000 steps) and prints the evaluation
curve, the area under it (mean evaluation reward over training) and the final test.
The comparison: per-implementation mean and standard deviation of those numbers over the
seeds, and the mean of the per-seed differences with its spread. Within noise means the
difference is small against the seed-to-seed spread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src")]

from rltrain.config import compose_config  # noqa: E402


def run(impl: str, seed: int, steps: int, env: str, folder: Path) -> tuple[list[float], float]:
    from rltrain.train import train

    cfg = compose_config([f"agent.impl={impl}", f"seed={seed}", f"env.id={env}",
                          f"train.nb_steps={steps}", "train.progress=false",
                          "train.checkpoint_interval=0"])
    result = train(cfg, folder)
    return [mean for _, mean in result.evaluations], result.test_mean_reward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=50000)
    parser.add_argument("--env", default="CartPole-v0")
    parser.add_argument("--impls", nargs=2, default=["keras-rl", "fast"])
    args = parser.parse_args()
    auc: dict[str, list[float]] = {impl: [] for impl in args.impls}
    test: dict[str, list[float]] = {impl: [] for impl in args.impls}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for impl in args.impls:
                curve, final = run(impl, seed, args.steps, args.env, Path(tmp) / f"{impl}{seed}")
                auc[impl].append(statistics.fmean(curve))
                test[impl].append(final)
                print(f"seed {seed} {impl:9s} eval curve {[round(c) for c in curve]} "
                      f"mean {auc[impl][-1]:6.1f} test {final:6.1f}", flush=True)
    print(f"\n{args.env}, {args.steps} steps, seeds {args.seeds}:")
    for name, table in (("mean eval reward over training", auc), ("final test reward", test)):
        print(f"  {name}:")
        for impl in args.impls:
            values = table[impl]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            print(f"    {impl:9s} {statistics.fmean(values):6.1f} +- {sd:5.1f}  {values}")
        diffs = [b - a for a, b in zip(table[args.impls[0]], table[args.impls[1]], strict=True)]
        sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
        print(f"    {args.impls[1]} - {args.impls[0]}: {statistics.fmean(diffs):+6.1f} "
              f"+- {sd:5.1f} (per-seed differences)")


if __name__ == "__main__":
    main()
