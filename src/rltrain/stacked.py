"""A trial's seeds in one session call: the train steps of K fast agents as one graph.

``StackedTrainer`` holds each agent's online and target weights, Adam's moments and step
count as one variable (a row: every weight flattened into it) with its own copy of the train
ops, all in one graph, and trains any subset of the agents in one session call: the call
feeds their batches and runs each one's ``gradient_steps`` DQN updates on its own row.
The agents keep everything else: their Keras models (built in their own graphs, so the
initial weights are those a seed gets alone), replay memories, random streams and envs.
Each agent's ops have the same shapes whatever stands beside it, so a seed trains bit for
bit the same alone or beside others (``tests/test_stacked.py``): TensorFlow's CPU kernels
round differently for other shapes, which ruled out one batched product over all rows
(the rows of a call padded to a fixed width cost 2x at K=1 with 64-unit networks).

The update is ``FastDQNAgent``'s (Huber loss on the taken action, double DQN, dueling,
soft or hard target updates) with tf-keras' legacy Adam written out (its
``ResourceApplyAdam`` formula), each agent with its own step count: an agent trains one
call more at some episode ends, as keras-rl2 does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rltrain import compat


def stackable(agents: Sequence[Any]) -> bool:
    """Whether these agents can train as one stack: fast agents on plain Dense models
    (the numpy forward) trained by plain Adam, with the same architecture and update."""
    from rltrain.fast import FastDQNAgent

    if not all(isinstance(a, FastDQNAgent) and a._numpy_forward for a in agents):
        return False
    adam = agents[0].optimizer_config
    if adam.get("name") != "Adam" or adam.get("amsgrad") or adam.get("decay", 0.0):
        return False
    return len({_signature(a) for a in agents}) == 1


def _signature(agent: Any) -> tuple[Any, ...]:
    shapes = tuple(tuple(w.shape) for w in agent.current_weights())
    acts = tuple(layer.activation.__name__ for layer in agent._dense)
    return (shapes, acts, agent.gamma, agent.batch_size, agent.gradient_steps,
            agent.enable_double_dqn, agent.enable_dueling_network, agent.dueling_type,
            agent.delta_clip, agent.target_model_update, agent.nb_actions,
            tuple(sorted(agent.optimizer_config.items())))


class StackedTrainer:
    """One graph and session training K agents' networks; ``train(agents)`` runs the
    pending train steps of any of them in one call."""

    def __init__(self, agents: Sequence[Any], threads: int = 1) -> None:
        import tensorflow as tf

        a = agents[0]
        self.agents = list(agents)
        self.rows = {id(agent): k for k, agent in enumerate(agents)}
        weights = [agent.current_weights() for agent in agents]  # before training:
        self._shapes = [tuple(w.shape) for w in weights[0]]
        self._sizes = [int(np.prod(s)) for s in self._shapes]
        self._p = sum(self._sizes)  # weights per network
        self.graph = tf.Graph()
        self._calls: dict[tuple[int, ...], Any] = {}  # a callable per set of agents trained
        with self.graph.as_default():
            p, width = self._p, a.state_width
            batch_rows = a.gradient_steps * a.batch_size
            # One variable per agent: [online | target | Adam's m | Adam's v | Adam's step];
            # the target starts as the online weights, as after compile.
            self._state, self._batch, self._out, hard = [], [], [], []
            for k, w in enumerate(weights):
                flat = _flatten(w)[None]
                zeros = np.zeros_like(flat)
                state = tf.Variable(np.concatenate([flat, flat, zeros, zeros, zeros[:, :1]],
                                                   axis=1), name=f"agent{k}")
                batch = tf.compat.v1.placeholder(tf.float32, (batch_rows, 2 * width + 3))
                self._state.append(state)
                self._batch.append(batch)
                self._out.append(self._train_ops(a, state, batch[None], width))
                hard.append(state[:, p:2 * p].assign(state[:, :p]))  # target = online
            self._hard = hard
            config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads,
                                              inter_op_parallelism_threads=threads)
            self.session = tf.compat.v1.Session(graph=self.graph, config=config)
            self.session.run(tf.compat.v1.global_variables_initializer())

    # -- the graph ----------------------------------------------------------------------
    def _train_ops(self, a: Any, state: Any, batch: Any, width: int) -> Any:
        """Read one agent's row, run ``gradient_steps`` updates, write the row back;
        returns ``(1, 3 + P)``: mean loss, mae, mean_q, then the new online weights."""
        import tensorflow as tf

        adam = a.optimizer_config
        lr, beta_1, beta_2, epsilon = (float(adam[k]) for k in
                                       ("learning_rate", "beta_1", "beta_2", "epsilon"))
        p = self._p
        online, target, m, v, t = tf.split(state.read_value(), [p, p, p, p, 1], axis=1)
        metrics = []
        for chunk in tf.split(batch, a.gradient_steps, axis=1):
            loss, stats = self._loss(a, online, target, chunk, width)
            grad = tf.gradients(tf.reduce_sum(loss), online)[0]
            if a.target_model_update < 1:  # from the weights before this step's update
                tau = a.target_model_update
                target = tau * online + (1 - tau) * target
            t = t + 1
            alpha = lr * tf.sqrt(1 - tf.pow(beta_2, t)) / (1 - tf.pow(beta_1, t))
            m = m + (grad - m) * (1 - beta_1)
            v = v + (tf.square(grad) - v) * (1 - beta_2)
            online = online - alpha * m / (tf.sqrt(v) + epsilon)
            metrics.append(stats)
        write = state.assign(tf.concat([online, target, m, v, t], axis=1))
        summary = metrics[0] if len(metrics) == 1 else tf.add_n(metrics) / len(metrics)
        with tf.control_dependencies([write]):
            return tf.concat([summary, tf.identity(online)], axis=1)

    def _layers(self, flat: Any) -> list[tuple[Any, Any]]:
        """(kernel, bias) per Dense layer from stacked rows ``(n, P)``."""
        import tensorflow as tf

        parts = tf.split(flat, self._sizes, axis=1)
        shaped = [tf.reshape(p, (-1, *s)) for p, s in zip(parts, self._shapes, strict=True)]
        return list(zip(shaped[::2], shaped[1::2], strict=True))

    def _q(self, a: Any, layers: list[tuple[Any, Any]], x: Any) -> Any:
        """Q-values ``(n, B, actions)`` of states ``(n, B, width)``, as ``compute_q_values``."""
        import tensorflow as tf

        for (kernel, bias), layer in zip(layers, a._dense, strict=True):
            x = layer.activation(tf.matmul(x, kernel) + bias[:, None, :])
        if a.enable_dueling_network:
            value, advantage = x[..., :1], x[..., 1:]
            if a.dueling_type == "avg":
                x = value + advantage - tf.reduce_mean(advantage, axis=-1, keepdims=True)
            elif a.dueling_type == "max":
                x = value + advantage - tf.reduce_max(advantage, axis=-1, keepdims=True)
            else:
                x = value + advantage
        return x

    def _loss(self, a: Any, online: Any, target: Any, batch: Any, width: int
              ) -> tuple[Any, Any]:
        """Each agent's mean Huber loss ``(n,)`` and ``[loss, mae, mean_q]`` ``(n, 3)``."""
        import tensorflow as tf

        from rltrain.fast import _huber

        state0, state1 = batch[..., :width], batch[..., width:2 * width]
        action = tf.cast(batch[..., 2 * width], tf.int32)
        reward, not_terminal = batch[..., 2 * width + 1], batch[..., 2 * width + 2]
        layers = self._layers(online)
        q = self._q(a, layers, state0)
        target_q = self._q(a, self._layers(target), state1)
        if a.enable_double_dqn:  # the online network picks, the target network values
            best = tf.argmax(self._q(a, layers, state1), axis=-1, output_type=tf.int32)
            next_q = tf.reduce_sum(target_q * tf.one_hot(best, a.nb_actions), axis=-1)
        else:
            next_q = tf.reduce_max(target_q, axis=-1)
        goal = tf.stop_gradient(reward + a.gamma * not_terminal * next_q)
        mask = tf.one_hot(action, a.nb_actions)
        error = goal - tf.reduce_sum(q * mask, axis=-1)
        loss = tf.reduce_mean(_huber(error, a.delta_clip), axis=1)
        mae = tf.reduce_mean(tf.abs(mask * goal[..., None] - q), axis=[1, 2])
        mean_q = tf.reduce_mean(tf.reduce_max(q, axis=-1), axis=1)
        return loss, tf.stack([loss, mae, mean_q], axis=1)

    # -- calls --------------------------------------------------------------------------
    def train(self, agents: Sequence[Any]) -> list[list[float]]:
        """Run the pending steps of ``agents`` (each has called ``backward`` and got
        ``DEFERRED``): one call for their train steps, one for hard target updates;
        returns each agent's step metrics."""
        trained = [a for a in agents if a.pending_batch is not None]
        rows: dict[int, np.ndarray] = {}
        if trained:
            out = self._call(tuple(self.rows[id(a)] for a in trained))(
                *(a.pending_batch for a in trained))
            rows = {id(a): out[k] for k, a in enumerate(trained)}
        hard = [self._hard[self.rows[id(a)]] for a in agents if a.pending_hard]
        if hard:
            self.session.run(hard)
        return [a.complete_step(rows.get(id(a))) for a in agents]

    def _call(self, agents: tuple[int, ...]) -> Any:
        """The callable that trains these agents' rows (built on first use): their batches
        in, their output rows out, stacked."""
        if agents not in self._calls:
            import tensorflow as tf

            with self.graph.as_default():
                out = tf.concat([self._out[k] for k in agents], axis=0)
            self._calls[agents] = compat.session_callable(
                self.session, out, [self._batch[k] for k in agents])
        return self._calls[agents]

    def target(self, agent: Any) -> np.ndarray:
        """An agent's target weights, flattened in ``current_weights`` order."""
        state = self.session.run(self._state[self.rows[id(agent)]])
        return state[0, self._p:2 * self._p]

    def close(self) -> None:
        for agent in self.agents:
            agent.detach()
        self.session.close()


def _flatten(weights: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(w, np.float32).ravel() for w in weights])
