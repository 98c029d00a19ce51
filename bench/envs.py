"""Training throughput of each env group's default agent, stock vs fast, side by side.

    python bench/envs.py [--steps 2000] [--rounds 2] [--envs cartpole acrobot ...]

For every env group (conf/env/*.yaml) it trains the group's own agent config with the
stock keras-rl2 agent and the fast one, in one process, and prints env steps per second and
the ratio. Every run is timed from its first step, as after warm-up: the agent trains from
the first possible step (``agent.nb_steps_warmup`` at its minimum) and acts from its network
at the group's final epsilon (``value_max = value_min``), as in most of a real run. One
untimed short run per env and agent first builds TensorFlow's graphs; rounds then alternate
stock and fast so a noisy (shared) machine hurts them alike; the median round is printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src")]

from throughput import config as run_config  # noqa: E402  (bench/throughput.py)

from rltrain.config import min_warmup  # noqa: E402

IMPLS = ("keras-rl", "fast")
# Groups whose agent uses keys stock keras-rl2 lacks: both agents run this instead (the same
# gradient steps per env step; MountainCar's agent takes 8 every 16 env steps).
SAME_WORK = {"mountaincar": ["agent.train_interval=2", "agent.gradient_steps=1",
                             "agent.bootstrap_on_truncation=false"]}


def config(env: str, impl: str, steps: int):
    """The env group's config, timed from the first training step, without evaluations."""
    cfg = run_config(impl, steps, [f"env={env}", *SAME_WORK.get(env, [])])
    cfg.agent.nb_steps_warmup = min_warmup(cfg)
    cfg.agent.policy.value_max = cfg.agent.policy.value_min
    return cfg


def steps_per_second(env: str, impl: str, steps: int, folder: Path) -> float:
    from rltrain.train import train

    return train(config(env, impl, steps), folder).steps_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="timed steps per run")
    parser.add_argument("--rounds", type=int, default=2, help="timed runs per env and agent")
    parser.add_argument("--envs", nargs="+",
                        default=["cartpole", "acrobot", "mountaincar", "lunarlander"])
    args = parser.parse_args()
    table: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for env in args.envs:
            for impl in IMPLS:  # untimed: builds the graphs, loads the env's modules
                steps_per_second(env, impl, 200, Path(tmp) / f"{env}-{impl}-warmup")
            rates: dict[str, list[float]] = {impl: [] for impl in IMPLS}
            for r in range(args.rounds):
                for impl in IMPLS:
                    rate = steps_per_second(env, impl, args.steps, Path(tmp) / f"{env}-{impl}{r}")
                    rates[impl].append(rate)
                    print(f"{env:12s} round {r + 1}: {impl:9s} {rate:8.0f} steps/s", flush=True)
            table[env] = {impl: statistics.median(rates[impl]) for impl in IMPLS}
    print(f"\n{args.steps} training steps per run, each group's default agent, median of "
          f"{args.rounds} rounds:")
    print(f"  {'env group':12s} {'stock':>9s} {'fast':>9s}   fast/stock")
    for env, rate in table.items():
        print(f"  {env:12s} {rate['keras-rl']:9.0f} {rate['fast']:9.0f}   "
              f"x{rate['fast'] / rate['keras-rl']:.1f}")


if __name__ == "__main__":
    main()
