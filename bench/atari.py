"""Atari throughput: stock keras-rl2 against the fast agent on ALE/Pong-v5, side by side.

    python bench/atari.py [--steps 2000] [--rounds 2] [--warmup 1000] [--threads 1]
                          [--budgets 1750000 10000000] [overrides ...]

Both agents are built from ``env=atari`` (the Nature-DQN conv model, 4 stacked 84x84
frames, train_interval 4) and first play ``--warmup`` steps (random actions, no training).
Then each round trains every agent for about ``--steps`` steps (up to the next episode
end), alternating, and prints steps/s, the env steps per hour each rate trains and the
hours each of ``--budgets`` takes at it (default: env=atari's 1.75M steps and CleanRL's 10M
for Pong's DQN). Last, the replay memory's footprint at 100,000 transitions: both memories
are filled with 100,000 distinct 84x84 uint8 frames, and tracemalloc counts the bytes they
allocate.
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src")]

import numpy as np  # noqa: E402

from rltrain.config import compose_config, validate  # noqa: E402

FOOTPRINT_TRANSITIONS = 100_000


def learner(impl: str, args: argparse.Namespace, folder: Path) -> Any:
    """A Learner of ``env=atari`` pausing every ``--steps`` steps (at an episode end)."""
    from rltrain.loop import fit_steps
    from rltrain.train import Learner

    cfg = compose_config(["env=atari", f"agent.impl={impl}", f"train.threads={args.threads}",
                          f"agent.nb_steps_warmup={args.warmup}", "train.nb_steps=10000000",
                          "train.progress=false", "train.eval_interval=0",
                          "train.test_episodes=0", "train.checkpoint_interval=0",
                          *args.overrides])
    validate(cfg)
    made = Learner(cfg, folder / impl)
    # Pause at the first episode end past every multiple of --steps (the evaluation hook
    # does nothing here): the first pause ends the warm-up.
    made._steps = fit_steps(made.agent, made.env, cfg.train.nb_steps, made.callbacks,
                            seed=cfg.seed, evaluate=lambda step: {"mean_reward": math.nan},
                            eval_interval=max(args.steps, args.warmup))
    return made


def chunk(made: Any) -> tuple[int, float]:
    """Train to the next pause; (steps, seconds)."""
    steps, seconds = int(made.agent.step), made.result.train_seconds
    made.resume()  # Atari: a conv model, never stacked (nothing deferred)
    return int(made.agent.step) - steps, made.result.train_seconds - seconds


def footprints(shape: tuple[int, ...]) -> dict[str, int]:
    """Bytes each replay memory allocates for 100,000 distinct uint8 frames (tracemalloc:
    numpy reports its buffers to it; resident memory would also count pages the kernel
    has not touched yet or has reclaimed)."""
    from rl.memory import SequentialMemory

    from rltrain.fast import FastSequentialMemory

    out = {}
    for name in ("fast", "keras-rl"):
        gc.collect()
        tracemalloc.start()
        memory: Any = FastSequentialMemory(FOOTPRINT_TRANSITIONS, window_length=4) \
            if name == "fast" else SequentialMemory(FOOTPRINT_TRANSITIONS, window_length=4)
        for i in range(FOOTPRINT_TRANSITIONS):  # a new frame each step, as the env gives
            memory.append(np.full(shape, i % 256, dtype=np.uint8), i % 6, 0.0, False)
        out[name] = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        if name == "fast":
            out["fast (its arrays' nbytes)"] = memory.nbytes
            assert memory.observations is not None and memory.observations.dtype == np.uint8
        del memory
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budgets", type=int, nargs="+", default=[1_750_000, 10_000_000],
                        help="env-step budgets to print hours for")
    parser.add_argument("overrides", nargs="*", help="extra config overrides")
    args = parser.parse_args()
    impls = ("keras-rl", "fast")
    rates: dict[str, list[float]] = {impl: [] for impl in impls}
    with tempfile.TemporaryDirectory() as tmp:
        learners = {impl: learner(impl, args, Path(tmp)) for impl in impls}
        try:
            for impl, made in learners.items():
                steps, seconds = chunk(made)
                print(f"warm-up:  {impl:9s} {steps:5d} steps {steps / seconds:6.1f} steps/s "
                      f"({args.warmup} steps acting only, then training)", flush=True)
            for r in range(args.rounds):
                for impl, made in learners.items():
                    steps, seconds = chunk(made)
                    rates[impl].append(steps / seconds)
                    print(f"round {r + 1}:  {impl:9s} {steps:5d} steps {steps / seconds:6.1f} "
                          f"steps/s", flush=True)
            shape = learners["fast"].env.observation_space.shape
        finally:
            for made in learners.values():
                made.close()
    base = statistics.median(rates["keras-rl"])
    print(f"\nALE/Pong-v5, env=atari (conv model, train_interval 4, batch 32, "
          f"{args.threads} TF thread(s)), median of {args.rounds} rounds after the warm-up:")
    for impl in impls:
        rate = statistics.median(rates[impl])
        hours = "  ".join(f"{b:,} steps: {b / rate / 3600:.1f} h" for b in args.budgets)
        print(f"  {impl:9s} {rate:6.1f} steps/s   x{rate / base:.2f} vs keras-rl   "
              f"{rate * 3600:,.0f} steps/h   {hours}")
    start = time.perf_counter()
    sizes = footprints(shape)
    print(f"\nreplay memory at {FOOTPRINT_TRANSITIONS:,} transitions of {shape} uint8 frames "
          f"(bytes allocated, {time.perf_counter() - start:.0f} s to fill):")
    for name, size in sizes.items():
        print(f"  {name:24s} {size / 1e6:7.1f} MB")
    print(f"  (float32 frames would be {4 * FOOTPRINT_TRANSITIONS * math.prod(shape) / 1e6:.0f}"
          " MB)")


if __name__ == "__main__":
    main()
