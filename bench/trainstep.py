"""Where one training step of the fast agent goes, split by part, in one process.

    python bench/trainstep.py [--steps 4000] [--rounds 3] [--seeds 1] [overrides ...]

Trains the config (default: the CartPole group with the network, batch and memory of the
default sweep's winner, docs/results.md) as a trial does (``rltrain.train.train_together``:
``--seeds`` learners, one stacked session call per step for all of them) in each variant in
turn, alternating rounds, and times each part of every step: the env step, the action
(numpy forward and epsilon-greedy), the replay sampling, the train step's session call,
and the rest of the loop (memory append, stack and callback bookkeeping). Prints
microseconds per step of all the seeds for each part. The variants:

- ``pool``: the stack's session hands its ops to TensorFlow's inter-op pool (before
  5a4f649);
- ``caller``: it runs them in the caller's thread (``rltrain.stacked.CALLER_THREAD``, now);
- ``exact``: as ``caller``, with keras-rl2's exact replay stream
  (``agent.memory.sampling=keras-rl``).

Stock keras-rl2's steps/s in the same rounds is the yardstick. Quote the ratios: the
machine's speed moves between sessions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src")]

from rltrain.config import compose_config  # noqa: E402

PARTS = ("env", "forward", "sampling", "session", "loop")
VARIANTS: dict[str, tuple[bool, list[str]]] = {  # name: (caller thread, overrides)
    "pool": (False, []),
    "caller": (True, []),
    "exact": (True, ["agent.memory.sampling=keras-rl"]),
}
WINNER = ["agent.model.units=64", "agent.model.layers=2", "agent.batch_size=64",
          "agent.memory.limit=20000"]


def config(overrides: list[str], steps: int, seed: int = 0) -> Any:
    return compose_config([f"train.nb_steps={steps}", "train.progress=false",
                           "train.eval_interval=0", "train.test_episodes=0",
                           "train.checkpoint_interval=0", f"seed={seed}", *overrides])


def timed_run(variant: str, overrides: list[str], steps: int, seeds: int) -> dict[str, float]:
    """Microseconds per step of all ``seeds`` for each part, training fresh agents."""
    from rltrain import stacked
    from rltrain.train import Learner, train_together

    caller, extra = VARIANTS[variant]
    stacked.CALLER_THREAD = caller
    spent: dict[str, float] = defaultdict(float)

    def timed(part: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                spent[part] += time.perf_counter() - start
        return run

    build = stacked.StackedTrainer._call
    stacked.StackedTrainer._call = lambda self, rows: timed("session", build(self, rows))
    try:
        with tempfile.TemporaryDirectory() as folder:
            learners = [Learner(config(["agent.impl=fast", *overrides, *extra], steps, seed),
                                Path(folder) / str(seed)) for seed in range(seeds)]
            for learner in learners:  # instance attributes: what the loop calls
                agent, memory, env = learner.agent, learner.agent.memory, learner.env
                agent.forward = timed("forward", agent.forward)
                memory.sample_rows = timed("sampling", memory.sample_rows)
                env.step = timed("env", env.step)
            begin = time.perf_counter()
            train_together(learners)
            total = time.perf_counter() - begin
            for learner in learners:
                learner.close()
    finally:
        stacked.StackedTrainer._call = build
    spent["loop"] = total - sum(spent.values())
    return {part: 1e6 * spent[part] / steps for part in PARTS} | {"total": 1e6 * total / steps}


def stock_steps_per_second(overrides: list[str], steps: int) -> float:
    from rltrain.train import train

    with tempfile.TemporaryDirectory() as folder:
        return train(config(["agent.impl=keras-rl", *overrides], steps), Path(folder)
                     ).steps_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=1, help="seeds trained side by side")
    parser.add_argument("overrides", nargs="*", default=WINNER)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    stock: list[float] = []
    for _ in range(args.rounds):
        for variant in VARIANTS:
            results[variant].append(timed_run(variant, args.overrides, args.steps, args.seeds))
        stock.append(stock_steps_per_second(args.overrides, min(args.steps, 2000)))
    print(f"us per step of {args.seeds} seed(s) (median of {args.rounds} rounds, {args.steps} "
          f"steps each, {' '.join(args.overrides)}):")
    print(f"{'part':<10}" + "".join(f"{v:>12}" for v in VARIANTS))
    for part in (*PARTS, "total"):
        print(f"{part:<10}" + "".join(
            f"{statistics.median(r[part] for r in results[v]):>12.1f}" for v in VARIANTS))
    stock_sps = statistics.median(stock)
    for variant in VARIANTS:
        sps = args.seeds * 1e6 / statistics.median(r["total"] for r in results[variant])
        print(f"{variant}: {sps:,.0f} steps/s = {sps / stock_sps:.1f}x stock keras-rl2 "
              f"({stock_sps:,.0f} steps/s in the same rounds)")


if __name__ == "__main__":
    main()
