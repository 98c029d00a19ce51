"""Training-loop throughput of the tutorial config, measured side by side in one process.

    python bench/throughput.py [--steps 5000] [--impls keras-rl fast fast:4] [--mlflow]

Prints env steps per second for each implementation (same steps, same seed) and the
ratios against the first one. ``fast:K`` trains K seeds side by side as a trial does (one
stacked session call per step for all K: ``rltrain.stacked``) and counts every seed's
steps; ``fast-own`` is the fast agent without the stack (its own graph, one call per step).
With ``--mlflow`` it also times a tracked run against an untracked one of the same
implementation, to show what MLflow logging costs.
Rounds alternate between implementations so a noisy machine hurts them alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src")]

from rltrain.config import compose_config  # noqa: E402


def config(impl: str, steps: int, extra: list[str], seed: int = 0):
    return compose_config([f"agent.impl={impl}", f"train.nb_steps={steps}",
                           "train.progress=false", "train.eval_interval=0",
                           "train.test_episodes=0", "train.checkpoint_interval=0",
                           f"seed={seed}", *extra])


def steps_per_second(name: str, steps: int, folder: Path, extra: list[str]) -> float:
    """Env steps per second of ``name`` (``keras-rl``, ``fast``, ``fast-own``, ``fast:K``),
    over all its seeds' steps, from the first step to the last (building excluded)."""
    from rltrain.train import Learner, train_together

    impl, _, k = name.partition(":")
    own = impl == "fast-own"
    impl = "fast" if own else impl
    learners = [Learner(config(impl, steps, extra, seed), folder / str(seed))
                for seed in range(int(k or 1))]
    try:
        start = time.perf_counter()
        results = train_together(learners, stacked=not own)
        return sum(r.nb_steps for r in results) / (time.perf_counter() - start)
    finally:
        for learner in learners:
            learner.close()


def tracked_seconds(impl: str, steps: int, store: Path, run: int, tracked: bool) -> float:
    """Wall time of a whole run, with or without the MLflow run around it."""
    from rltrain.run import tracked_train
    from rltrain.train import train

    cfg = config(impl, steps, [f"tracking.uri=sqlite:///{store / 'mlflow.db'}"])
    folder = store / f"{'tracked' if tracked else 'plain'}{run}"
    start = time.perf_counter()
    if tracked:
        tracked_train(cfg, folder=folder)
    else:
        train(cfg, folder)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--impls", nargs="+", default=["keras-rl"])
    parser.add_argument("--mlflow", action="store_true", help="also time MLflow's overhead")
    parser.add_argument("overrides", nargs="*", help="extra config overrides")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {impl: [] for impl in args.impls}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for impl in args.impls:
                rate = steps_per_second(impl, args.steps, Path(tmp) / f"{impl}{r}", args.overrides)
                rates[impl].append(rate)
                print(f"round {r + 1}: {impl:9s} {rate:8.0f} steps/s", flush=True)
        base = statistics.median(rates[args.impls[0]])
        config_ = " ".join(args.overrides) or "the tutorial config"
        print(f"\n{args.steps} steps of {config_}, median of {args.rounds} rounds:")
        for impl in args.impls:
            rate = statistics.median(rates[impl])
            print(f"  {impl:9s} {rate:8.0f} steps/s   x{rate / base:.2f} vs {args.impls[0]}")
        if args.mlflow:
            impl = args.impls[-1]
            store = Path(tmp)
            tracked_seconds(impl, 100, store, -1, True)  # create the store's tables once
            plain, tracked = [], []
            for r in range(args.rounds):
                plain.append(tracked_seconds(impl, args.steps, store, r, False))
                tracked.append(tracked_seconds(impl, args.steps, store, r, True))
            p, t = statistics.median(plain), statistics.median(tracked)
            print(f"  MLflow ({impl}, whole run incl. artifacts and plot): untracked {p:.1f}s, "
                  f"tracked {t:.1f}s, overhead {100 * (t / p - 1):+.1f}%")


if __name__ == "__main__":
    main()
