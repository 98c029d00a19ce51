"""The training and evaluation loops, with keras-rl2's callback interface.

keras-rl2's ``Agent.fit`` counts steps in ``np.int16`` and never ends for budgets over
32,767 steps under numpy 2; this loop counts in Python ints and otherwise follows
``fit``/``test`` step for step (including the extra forward/backward at episode ends),
so keras-rl2's callbacks (``FileLogger``, ``ModelIntervalCheckpoint``) work unchanged.
The agent learns from the env's reward; episode rewards and logs report the raw one
(``info[RAW_REWARD]``, when the training env clips rewards: Atari).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np

from rltrain.envs import RAW_REWARD


class _Deferred:
    """What an agent's ``backward`` returns when a stacked trainer runs its train step
    (``rltrain.stacked``): the loop yields it and gets the step's metrics back."""

    def __repr__(self) -> str:
        return "DEFERRED"


DEFERRED = _Deferred()


class StopTraining(Exception):
    """Raised by a callback to end training early (e.g. a pruned trial); ``fit`` returns."""


HOOKS = ("on_train_begin", "on_train_end", "on_episode_begin", "on_episode_end",
         "on_step_begin", "on_step_end", "on_action_begin", "on_action_end",
         "on_evaluation_end")


class Callbacks:
    """Calls each hook on every callback that has it.

    Takes keras-rl2 callbacks (``rl.callbacks.Callback``) and plain objects alike; the
    extra hook ``on_evaluation_end(step, logs)`` receives each greedy evaluation.
    """

    def __init__(self, callbacks: Sequence[Any], agent: Any, env: Any,
                 params: dict[str, Any]) -> None:
        for callback in callbacks:  # what keras-rl2's fit does through Keras' CallbackList
            if hasattr(callback, "set_model"):
                callback.set_model(agent)
            if hasattr(callback, "_set_env"):
                callback._set_env(env)
            if hasattr(callback, "set_params"):
                callback.set_params(params)
        self._hooks = {
            name: [getattr(c, name) for c in callbacks if callable(getattr(c, name, None))]
            for name in HOOKS}
        # The per-step hooks, bound once: the loop calls them thousands of times a second.
        self.step_begin = self._hooks["on_step_begin"]
        self.step_end = self._hooks["on_step_end"]
        self.action_begin = self._hooks["on_action_begin"]
        self.action_end = self._hooks["on_action_end"]

    def _call(self, name: str, *args: Any) -> None:
        for hook in self._hooks[name]:
            hook(*args)

    def on_train_begin(self) -> None:
        self._call("on_train_begin", {})

    def on_train_end(self, logs: dict[str, Any]) -> None:
        self._call("on_train_end", logs)

    def on_episode_begin(self, episode: int) -> None:
        self._call("on_episode_begin", episode, {})

    def on_episode_end(self, episode: int, logs: dict[str, Any]) -> None:
        self._call("on_episode_end", episode, logs)

    def on_evaluation_end(self, step: int, logs: dict[str, Any]) -> None:
        self._call("on_evaluation_end", step, logs)


def _backward_for(agent: Any) -> Callable[[float, bool, bool], list[float]]:
    """Store the transition and train. keras-rl2 treats truncation as a terminal; an agent
    that ``records_truncation`` also gets the flag. Chosen once, outside the step loop."""
    if getattr(agent, "records_truncation", False):
        return lambda reward, terminated, truncated: agent.backward(
            reward, terminal=terminated or truncated, truncated=truncated)
    return lambda reward, terminated, truncated: agent.backward(
        reward, terminal=terminated or truncated)


def fit(agent: Any, env: Any, nb_steps: int, callbacks: Callbacks, seed: int,
        evaluate: Callable[[int], dict[str, Any]] | None = None, eval_interval: int = 0) -> str:
    """Train ``agent`` for ``nb_steps`` env steps; return why it stopped early, or "".

    ``evaluate(step)`` runs at the first episode end after every ``eval_interval`` steps
    (between episodes, so the agent's recent state is untouched) and once more at the end;
    its logs go to ``callbacks.on_evaluation_end``.
    """
    steps = fit_steps(agent, env, nb_steps, callbacks, seed, evaluate, eval_interval)
    while True:
        try:
            next(steps)  # evaluations only: an agent trained alone defers nothing
        except StopIteration as done:
            return done.value


def fit_steps(agent: Any, env: Any, nb_steps: int, callbacks: Callbacks, seed: int,
              evaluate: Callable[[int], dict[str, Any]] | None = None,
              eval_interval: int = 0) -> Generator[Any, Any, str]:
    """``fit`` as a generator: yields the env step after each evaluation (and ``DEFERRED``
    when the agent's train step waits for a stacked trainer: send its metrics back),
    returns why training stopped early (or ""). ``throw(StopTraining(why))`` at a yield stops it
    there, as a callback raising StopTraining would: agents trained side by side pause
    at their evaluations, and their trial may stop them all.

    Whatever ends training, ``on_train_end`` runs, so keras-rl2's ``FileLogger`` writes
    its JSON and progress bars close even after a crash.
    """
    agent.training = True
    agent._on_train_begin()
    callbacks.on_train_begin()
    agent.step = 0
    try:
        yield from _run(agent, env, nb_steps, callbacks, seed, evaluate, eval_interval)
    except StopTraining as stop:
        callbacks.on_train_end({"did_abort": True})
        return str(stop) or "stopped"
    except BaseException:
        with contextlib.suppress(Exception):  # never hide the error that ended training
            callbacks.on_train_end({"did_abort": True})
        raise
    finally:
        agent._on_train_end()
    callbacks.on_train_end({"did_abort": False})
    return ""


def _run(agent: Any, env: Any, nb_steps: int, callbacks: Callbacks, seed: int,
         evaluate: Callable[[int], dict[str, Any]] | None,
         eval_interval: int) -> Generator[Any, Any, None]:
    """The loop proper: keras-rl2's ``Agent.fit`` with Python int counters."""
    episode = 0
    next_eval = eval_interval
    last_eval = -1
    observation = None
    episode_reward = 0.0
    episode_step = 0
    reset_seed: int | None = seed
    backward = _backward_for(agent)
    while agent.step < nb_steps:
        if observation is None:
            callbacks.on_episode_begin(episode)
            episode_step, episode_reward = 0, 0.0
            agent.reset_states()
            observation, _ = env.reset(seed=reset_seed)
            reset_seed = None  # seed the first episode only; later ones follow the env's RNG
        for hook in callbacks.step_begin:
            hook(episode_step, {})
        action = agent.forward(observation)
        for hook in callbacks.action_begin:
            hook(action, {})
        observation, reward, terminated, truncated, info = env.step(action)
        for hook in callbacks.action_end:
            hook(action, {})
        metrics = yield from _settled(backward(float(reward), terminated, truncated))
        reward = info.get(RAW_REWARD, reward)  # the game's score, when training clips it
        episode_reward += float(reward)
        logs = {"action": action, "observation": observation, "reward": reward,
                "metrics": metrics, "episode": episode, "info": info}
        for hook in callbacks.step_end:
            hook(episode_step, logs)
        episode_step += 1
        agent.step += 1
        if terminated or truncated:
            agent.forward(observation)  # as keras-rl2: let the agent see the last state
            yield from _settled(agent.backward(0.0, terminal=False))
            callbacks.on_episode_end(episode, {
                "episode_reward": episode_reward, "nb_episode_steps": episode_step,
                "nb_steps": agent.step})
            episode += 1
            observation = None
            if evaluate is not None and eval_interval and agent.step >= next_eval:
                callbacks.on_evaluation_end(agent.step, evaluate(agent.step))
                last_eval = agent.step
                next_eval = (agent.step // eval_interval + 1) * eval_interval
                yield agent.step
    if evaluate is not None and eval_interval and last_eval < agent.step:
        callbacks.on_evaluation_end(agent.step, evaluate(agent.step))
        yield agent.step


def _settled(metrics: Any) -> Generator[Any, Any, Any]:
    """A ``backward``'s metrics; ``DEFERRED`` is yielded first, and the stacked trainer
    sends the metrics back."""
    if metrics is DEFERRED:
        metrics = yield DEFERRED
    return metrics


def run_episodes(agent: Any, env: Any, nb_episodes: int, seed: int,
                 frames: list[Any] | None = None) -> list[float]:
    """Play ``nb_episodes`` with the agent's test policy, as ``Agent.test`` does.

    Episode ``i`` starts from ``env.reset(seed=seed + i)``, so every evaluation sees the
    same start states. With ``frames``, each ``env.render()`` is appended to it. The
    agent's training flag is restored afterwards.
    """
    was_training = agent.training
    agent.training = False
    rewards = []
    try:
        for i in range(nb_episodes):
            agent.reset_states()
            observation, _ = env.reset(seed=seed + i)
            if frames is not None:
                frames.append(env.render())
            total, done = 0.0, False
            while not done:
                action = agent.forward(observation)
                observation, reward, terminated, truncated, _ = env.step(action)
                done = terminated or truncated
                agent.backward(float(reward), terminal=done)
                total += float(reward)
                if frames is not None:
                    frames.append(env.render())
            agent.forward(observation)
            agent.backward(0.0, terminal=False)
            rewards.append(total)
    finally:
        agent.training = was_training
    return rewards


def play_side_by_side(agent: Any, envs: Sequence[Any], seed: int) -> list[float]:
    """``run_episodes(agent, env, len(envs), seed)`` with the episodes played side by side:
    episode ``i`` on ``envs[i]`` from ``reset(seed=seed + i)``, one batched greedy forward
    (``agent.greedy_actions``) per step for the episodes still running. The same episodes
    and rewards, for an agent that ``plays_side_by_side`` (its test policy draws nothing,
    its state is the last observation) on envs whose episodes depend only on their seed."""
    observations = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    totals = [0.0] * len(envs)
    running = list(range(len(envs)))
    while running:
        actions = agent.greedy_actions(np.stack([observations[i] for i in running]))
        still = []
        for i, action in zip(running, actions.tolist(), strict=True):
            observations[i], reward, terminated, truncated, _ = envs[i].step(action)
            totals[i] += float(reward)
            if not (terminated or truncated):
                still.append(i)
        running = still
    return totals
