"""``train(cfg, callbacks) -> TrainResult``: build the agent, run the loop, evaluate.

Usable without MLflow or Optuna: they reach the loop as plain callbacks.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from rltrain import compat
from rltrain.config import validate

EVAL_SEED_OFFSET = 1_000_000  # evaluation episodes start from seeds the training env never uses
TEST_SEED_OFFSET = 2_000_000


@dataclass
class TrainResult:
    """What a run produced: curves, evaluations, the final test and where files went."""

    episode_rewards: list[float] = field(default_factory=list)
    episode_end_steps: list[int] = field(default_factory=list)
    evaluations: list[tuple[int, float]] = field(default_factory=list)
    test_rewards: list[float] = field(default_factory=list)
    nb_steps: int = 0
    train_seconds: float = 0.0
    output_dir: Path = Path(".")
    weights_path: Path | None = None
    stopped: str = ""  # why training stopped early (a callback raised StopTraining), or ""

    @property
    def test_mean_reward(self) -> float:
        return float(np.mean(self.test_rewards)) if self.test_rewards else float("nan")

    @property
    def steps_per_second(self) -> float:
        return self.nb_steps / self.train_seconds if self.train_seconds else 0.0


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and TensorFlow's graph (call after ``clear_session``)."""
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    tf.compat.v1.set_random_seed(seed)


def make_env(env_id: str, seed: int) -> Any:
    """A gymnasium env whose action space is seeded (its dynamics are seeded on reset)."""
    import gymnasium as gym

    env = gym.make(env_id, disable_env_checker=True)  # config validation already made one
    env.action_space.seed(seed)
    return env


def train(cfg: DictConfig, output_dir: Path, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Train one agent as ``cfg`` says; files go to ``output_dir``; callbacks see every step."""
    validate(cfg)
    keras = compat.load(threads=cfg.train.threads)
    from rl.callbacks import FileLogger, ModelIntervalCheckpoint

    from rltrain.agent import build_agent
    from rltrain.loop import Callbacks, fit, run_episodes

    output_dir.mkdir(parents=True, exist_ok=True)
    keras.backend.clear_session()  # one graph per run when a process trains many agents
    seed_everything(cfg.seed)
    env = make_env(cfg.env.id, cfg.seed)
    eval_env = make_env(cfg.env.id, cfg.seed + EVAL_SEED_OFFSET)
    result = TrainResult(output_dir=output_dir)
    try:
        agent = build_agent(cfg.agent, env.observation_space.shape, int(env.action_space.n))
        recorder = _Recorder(result)
        own: list[Any] = [recorder, FileLogger(str(output_dir / "dqn_log.json"),
                                               interval=cfg.train.log_interval)]
        if cfg.train.checkpoint_interval:
            (output_dir / "checkpoints").mkdir(exist_ok=True)
            own.append(ModelIntervalCheckpoint(
                str(output_dir / "checkpoints" / "dqn_weights_{step}.h5"),
                interval=cfg.train.checkpoint_interval))
        cbs = Callbacks([*own, *callbacks], agent, env, {"nb_steps": cfg.train.nb_steps})

        def evaluate(step: int) -> dict[str, Any]:
            rewards = run_episodes(agent, eval_env, cfg.train.eval_episodes,
                                   cfg.seed + EVAL_SEED_OFFSET)
            return {"mean_reward": float(np.mean(rewards)), "rewards": rewards}

        start = time.perf_counter()
        result.stopped = fit(agent, env, cfg.train.nb_steps, cbs, seed=cfg.seed, evaluate=evaluate,
            eval_interval=cfg.train.eval_interval)
        result.train_seconds = time.perf_counter() - start
        result.nb_steps = int(agent.step)
        result.weights_path = output_dir / "dqn_weights.h5"
        agent.save_weights(str(result.weights_path), overwrite=True)
        if cfg.train.test_episodes and not result.stopped:
            result.test_rewards = run_episodes(agent, eval_env, cfg.train.test_episodes,
                                               cfg.seed + TEST_SEED_OFFSET)
    finally:
        env.close()
        eval_env.close()
    return result


class _Recorder:
    """Keeps the episode rewards and evaluations in the TrainResult."""

    def __init__(self, result: TrainResult) -> None:
        self.result = result

    def on_episode_end(self, episode: int, logs: dict[str, Any]) -> None:
        self.result.episode_rewards.append(float(logs["episode_reward"]))
        self.result.episode_end_steps.append(int(logs["nb_steps"]))

    def on_evaluation_end(self, step: int, logs: dict[str, Any]) -> None:
        self.result.evaluations.append((step, logs["mean_reward"]))
