"""Where one training step of the fast agent goes, split by part, in one process.

    python bench/trainstep.py [--steps 4000] [--rounds 3] [overrides ...]

Trains the config (default: the CartPole group with the default sweep's batch of 128)
with each replay sampler in turn, alternating rounds, and times each part of every step:
the env step, the action (numpy forward), the replay sampling, the train step's session
call, and the rest of the loop (memory append, bookkeeping). Prints microseconds per env
step for each part and the sampler's ratio; stock keras-rl2's steps/s in the same rounds
as the yardstick. Quote the ratios: the machine's speed moves between sessions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src")]

from rltrain.config import compose_config  # noqa: E402

PARTS = ("env", "forward", "sampling", "session", "loop")


def timed_run(overrides: list[str], steps: int) -> dict[str, float]:
    """Microseconds per env step of each part, training ``steps`` steps of a fresh agent."""
    from rltrain import compat
    from rltrain.agent import build_agent
    from rltrain.envs import input_scale, make_env

    cfg = compose_config(overrides)
    compat.load().backend.clear_session()
    env = make_env(cfg.env, cfg.seed, training=True)
    agent = build_agent(cfg.agent, env.observation_space.shape, env.action_space.n, cfg.seed,
                        input_scale(env.observation_space))
    agent.training = True
    spent: dict[str, float] = defaultdict(float)
    memory, train_step = agent.memory, agent._train_step

    def timed(name: str):
        method = getattr(memory.__class__, name)

        def sample(*args, **kwargs):
            start = time.perf_counter()
            out = method(memory, *args, **kwargs)
            spent["sampling"] += time.perf_counter() - start
            return out
        return sample

    def session(batch):
        start = time.perf_counter()
        out = train_step(batch)
        spent["session"] += time.perf_counter() - start
        return out

    memory.sample_arrays, memory.sample_rows = timed("sample_arrays"), timed("sample_rows")
    agent._train_step = session
    obs, _ = env.reset(seed=cfg.seed)
    begin = time.perf_counter()
    for step in range(1, steps + 1):
        agent.step = step
        start = time.perf_counter()
        action = agent.forward(obs)
        spent["forward"] += time.perf_counter() - start
        start = time.perf_counter()
        obs, reward, terminated, truncated, _ = env.step(action)
        spent["env"] += time.perf_counter() - start
        agent.backward(float(reward), terminal=terminated or truncated, truncated=truncated)
        if terminated or truncated:
            obs, _ = env.reset()
    total = time.perf_counter() - begin
    spent["loop"] = total - sum(spent.values())
    return {part: 1e6 * spent[part] / steps for part in PARTS} | {"total": 1e6 * total / steps}


def stock_steps_per_second(overrides: list[str], steps: int) -> float:
    import tempfile

    from rltrain.train import train

    cfg = compose_config([*overrides, "agent.impl=keras-rl", f"train.nb_steps={steps}",
                          "train.progress=false", "train.eval_interval=0",
                          "train.test_episodes=0", "train.checkpoint_interval=0"])
    with tempfile.TemporaryDirectory() as folder:
        return train(cfg, Path(folder)).steps_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("overrides", nargs="*",
                        default=["agent.batch_size=128", "agent.nb_steps_warmup=200"])
    args = parser.parse_args()
    samplers = ("keras-rl", "fast")
    results: dict[str, list[dict[str, float]]] = {s: [] for s in samplers}
    stock: list[float] = []
    for _ in range(args.rounds):
        for sampler in samplers:
            results[sampler].append(timed_run(
                [*args.overrides, f"agent.memory.sampling={sampler}"], args.steps))
        stock.append(stock_steps_per_second(args.overrides, min(args.steps, 2000)))
    print(f"us per env step (median of {args.rounds} rounds, {args.steps} steps each, "
          f"{' '.join(args.overrides)}):")
    print(f"{'part':<10}" + "".join(f"{s:>12}" for s in samplers))
    for part in (*PARTS, "total"):
        print(f"{part:<10}" + "".join(
            f"{statistics.median(r[part] for r in results[s]):>12.1f}" for s in samplers))
    stock_sps = statistics.median(stock)
    for sampler in samplers:
        sps = 1e6 / statistics.median(r["total"] for r in results[sampler])
        print(f"sampling={sampler}: {sps:,.0f} steps/s = {sps / stock_sps:.1f}x stock keras-rl2 "
              f"({stock_sps:,.0f} steps/s in the same rounds)")


if __name__ == "__main__":
    main()
