"""``train(cfg, callbacks) -> TrainResult``: build the agent, run the loop, evaluate.

Usable without MLflow or Optuna: they reach the loop as plain callbacks.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from rltrain import compat
from rltrain.config import validate
from rltrain.envs import input_scale, make_env
from rltrain.loop import play_side_by_side, run_episodes

EVAL_SEED_OFFSET = 1_000_000  # evaluation episodes start from seeds the training env never uses
TEST_SEED_OFFSET = 2_000_000


@dataclass
class TrainResult:
    """What a run produced: curves, evaluations, the final test and where files went.

    With ``train.keep_best`` the delivered agent (``dqn_weights.h5``, ``test_rewards``) is
    the one of the best periodic evaluation (``best_evaluation``); ``final_test_rewards``
    then scores the last weights on the same test episodes.
    """

    episode_rewards: list[float] = field(default_factory=list)
    episode_end_steps: list[int] = field(default_factory=list)
    evaluations: list[tuple[int, float]] = field(default_factory=list)
    test_rewards: list[float] = field(default_factory=list)
    final_test_rewards: list[float] = field(default_factory=list)
    best_evaluation: tuple[int, float] | None = None
    nb_steps: int = 0
    train_seconds: float = 0.0
    output_dir: Path = Path(".")
    weights_path: Path | None = None
    stopped: str = ""  # why training stopped early (a callback raised StopTraining), or ""

    @property
    def test_mean_reward(self) -> float:
        return _mean(self.test_rewards)

    @property
    def final_test_mean_reward(self) -> float:
        return _mean(self.final_test_rewards or self.test_rewards)

    @property
    def steps_per_second(self) -> float:
        return self.nb_steps / self.train_seconds if self.train_seconds else 0.0


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and TensorFlow's default graph (stock keras-rl2 draws from the
    global streams; the fast agent has its own, see ``rltrain.fast.Streams``)."""
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    tf.compat.v1.set_random_seed(seed)


class Learner:
    """One agent, built from ``cfg`` in its own TensorFlow graph and session, with its envs,
    callbacks and result.

    Learners trained side by side (a trial's seeds) share nothing: each has its own graph,
    session, env and random streams (stock keras-rl2's global ones are swapped in and out
    around it), so seed s gives exactly the episodes it gives when trained alone.
    """

    def __init__(self, cfg: DictConfig, output_dir: Path, callbacks: Sequence[Any] = ()) -> None:
        compat.load(threads=cfg.train.threads)
        import tensorflow as tf
        from rl.callbacks import FileLogger, ModelIntervalCheckpoint

        from rltrain.agent import build_agent
        from rltrain.loop import Callbacks

        self.cfg = cfg
        output_dir.mkdir(parents=True, exist_ok=True)
        self.result = TrainResult(output_dir=output_dir)
        self.env = make_env(cfg.env, cfg.seed, training=True)
        self.eval_env = make_env(cfg.env, cfg.seed + EVAL_SEED_OFFSET)
        self._eval_envs = [self.eval_env]  # more are made for episodes side by side
        self.graph = tf.Graph()
        with self.graph.as_default():
            seed_everything(cfg.seed)
            self.agent = build_agent(cfg.agent, self.env.observation_space.shape,
                                     int(self.env.action_space.n), seed=cfg.seed,
                                     input_scale=input_scale(self.env.observation_space))
            self.session = tf.compat.v1.keras.backend.get_session()  # Keras made it for the graph
        # Building consumes Python's global stream (tf-keras does): seed again, so stock
        # keras-rl2 starts training from the same draws as the fast agent's own streams.
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        self._global_streams = (random.getstate(), np.random.get_state())
        self._own_streams = cfg.agent.impl == "fast"  # read once: omegaconf is slow per step
        self._best_weights: list[np.ndarray] | None = None
        own: list[Any] = [_Recorder(self.result), FileLogger(
            str(output_dir / "dqn_log.json"), interval=cfg.train.log_interval)]
        if cfg.train.checkpoint_interval:
            (output_dir / "checkpoints").mkdir(exist_ok=True)
            own.append(ModelIntervalCheckpoint(
                str(output_dir / "checkpoints" / "dqn_weights_{step}.h5"),
                interval=cfg.train.checkpoint_interval))
        self.callbacks = Callbacks([*own, *callbacks], self.agent, self.env,
                                   {"nb_steps": cfg.train.nb_steps})
        self._steps: Generator[int, None, str] | None = None

    @contextmanager
    def scope(self) -> Iterator[None]:
        """This learner's graph and session as TensorFlow's defaults, and (stock agent)
        its state of the global random streams."""
        own_streams = self._own_streams
        if not own_streams:
            random.setstate(self._global_streams[0])
            np.random.set_state(self._global_streams[1])
        try:
            with self.graph.as_default(), self.session.as_default():
                yield
        finally:
            if not own_streams:
                self._global_streams = (random.getstate(), np.random.get_state())

    def _evaluate(self, step: int) -> dict[str, Any]:
        """A greedy evaluation; with ``keep_best``, remember the weights of the best one
        (the latest among equals)."""
        rewards = self._episodes(self.cfg.train.eval_episodes, self.cfg.seed + EVAL_SEED_OFFSET)
        mean = float(np.mean(rewards))
        best = self.result.best_evaluation
        if best is None or mean >= best[1]:
            self.result.best_evaluation = (step, mean)
            if self.cfg.train.keep_best:
                self._best_weights = _weights(self.agent)
        return {"mean_reward": mean, "rewards": rewards}

    def resume(self, reply: Any = None, stop: BaseException | None = None) -> Any:
        """Train until the loop yields: ``DEFERRED`` (a train step waits for the stacked
        trainer; ``reply`` brings its metrics back) or the step of an evaluation. ``stop``
        is thrown in instead. At the end raises ``StopIteration`` with why training ended
        early ("" if it did not)."""
        if self._steps is None:
            from rltrain.loop import fit_steps

            c = self.cfg
            self._steps = fit_steps(self.agent, self.env, c.train.nb_steps, self.callbacks,
                                    seed=c.seed, evaluate=self._evaluate,
                                    eval_interval=c.train.eval_interval)
        start = time.perf_counter()
        steps = self._steps
        try:
            # A stacked agent's steps touch no graph (its saves enter their own): no scope
            # on the hot path, which resumes once per step.
            if getattr(self.agent, "stacked", False):
                return steps.send(reply) if stop is None else steps.throw(stop)
            with self.scope():
                return steps.send(reply) if stop is None else steps.throw(stop)
        finally:
            self.result.train_seconds += time.perf_counter() - start

    def finish(self, stopped: str) -> TrainResult:
        """Save the delivered weights and run the final test (not after an early stop)."""
        r, c = self.result, self.cfg
        r.stopped, r.nb_steps = stopped, int(self.agent.step)
        r.weights_path = r.output_dir / "dqn_weights.h5"
        with self.scope():
            if hasattr(self.agent, "write_model_weights"):  # after a stacked trainer
                self.agent.write_model_weights()
            test = c.train.test_episodes and not stopped
            if self._best_weights is not None and not stopped:
                self.agent.save_weights(str(r.output_dir / "final_weights.h5"), overwrite=True)
                if test:
                    r.final_test_rewards = self._test()
                self.agent.model.set_weights(self._best_weights)
                if hasattr(self.agent, "sync_weights"):
                    self.agent.sync_weights()
            self.agent.save_weights(str(r.weights_path), overwrite=True)
            if test:
                r.test_rewards = self._test()
        return r

    def _test(self) -> list[float]:
        """The final test: episodes that no evaluation used, so not the ones that picked
        the delivered weights."""
        return self._episodes(self.cfg.train.test_episodes, self.cfg.seed + TEST_SEED_OFFSET)

    def _episodes(self, count: int, seed: int) -> list[float]:
        """``count`` greedy episodes from ``seed``, ``seed + 1``, ...: side by side (an env
        each, one forward per step) when ``train.eval_side_by_side`` and the agent can,
        else one after another on the eval env; the same episodes either way."""
        if not (self.cfg.train.eval_side_by_side and count > 1
                and getattr(self.agent, "plays_side_by_side", False)):
            return run_episodes(self.agent, self.eval_env, count, seed)
        while len(self._eval_envs) < count:
            self._eval_envs.append(make_env(self.cfg.env, self.cfg.seed + EVAL_SEED_OFFSET))
        return play_side_by_side(self.agent, self._eval_envs[:count], seed)

    def close(self) -> None:
        self.env.close()
        for env in self._eval_envs:
            env.close()
        if self._steps is not None:
            self._steps.close()
        self.session.close()


def train_together(learners: Sequence[Learner],
                   after_round: Callable[[int], None] | None = None,
                   stacked: bool = True) -> list[TrainResult]:
    """Train learners side by side: in each round every learner trains up to its next
    evaluation; then ``after_round(round)`` may raise ``StopTraining`` to stop them all
    there (a pruned trial). Fast agents on Dense models train as one stack (their train
    steps in one session call, ``rltrain.stacked``), even alone, so a seed trains the same
    beside others (``stacked=False``: each in its own graph, one call per step, as before
    the stack; benchmarks compare the two). Returns their results, in order."""
    from rltrain.loop import StopTraining
    from rltrain.stacked import StackedTrainer, stackable

    agents = [learner.agent for learner in learners]
    stack = StackedTrainer(agents, learners[0].cfg.train.threads) \
        if stacked and stackable(agents) else None
    for agent in agents if stack else ():
        agent.attach()
    ended: list[str | None] = [None] * len(learners)
    round_ = 0
    try:
        while any(e is None for e in ended):
            _round(learners, ended, stack)
            if after_round is None or all(e is not None for e in ended):
                continue  # the last round only ended the loops: no new evaluation
            round_ += 1
            try:
                after_round(round_)
            except StopTraining as stop:
                for i, learner in enumerate(learners):
                    if ended[i] is None:
                        ended[i] = _ended(learner, stop=stop) or str(stop)
    finally:
        if stack is not None:
            stack.close()
    return [learner.finish(e or "") for learner, e in zip(learners, ended, strict=True)]


def _round(learners: Sequence[Learner], ended: list[str | None], stack: Any) -> None:
    """Every learner still training trains up to its next evaluation (or its end); the
    train steps they defer run together, one stacked call for all that wait."""
    from rltrain.loop import DEFERRED

    running = [i for i, e in enumerate(ended) if e is None]
    replies: dict[int, Any] = {}
    while running:
        waiting = []
        for i in running:
            try:
                if learners[i].resume(replies.pop(i, None)) is DEFERRED:
                    waiting.append(i)
            except StopIteration as done:
                ended[i] = done.value
        if waiting:
            start = time.perf_counter()
            metrics = stack.train([learners[i].agent for i in waiting])
            seconds = time.perf_counter() - start  # each waited for the whole call
            for i, m in zip(waiting, metrics, strict=True):
                replies[i] = m
                learners[i].result.train_seconds += seconds
        running = waiting  # the others paused at their evaluation, or ended


def _ended(learner: Learner, stop: BaseException) -> str | None:
    """Throw ``stop`` into a learner paused at its evaluation: why it ended, or None."""
    try:
        learner.resume(stop=stop)
    except StopIteration as done:
        return done.value
    return None


def _weights(agent: Any) -> list[np.ndarray]:
    """The agent's online weights now (the fast agent's may be newer than its model's)."""
    return agent.current_weights() if hasattr(agent, "current_weights") else \
        agent.model.get_weights()


def train(cfg: DictConfig, output_dir: Path, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Train one agent as ``cfg`` says; files go to ``output_dir``; callbacks see every step."""
    validate(cfg)
    learner = Learner(cfg, output_dir, callbacks)
    try:
        return train_together([learner])[0]
    finally:
        learner.close()


class _Recorder:
    """Keeps the episode rewards and evaluations in the TrainResult."""

    def __init__(self, result: TrainResult) -> None:
        self.result = result

    def on_episode_end(self, episode: int, logs: dict[str, Any]) -> None:
        self.result.episode_rewards.append(float(logs["episode_reward"]))
        self.result.episode_end_steps.append(int(logs["nb_steps"]))

    def on_evaluation_end(self, step: int, logs: dict[str, Any]) -> None:
        self.result.evaluations.append((step, logs["mean_reward"]))
