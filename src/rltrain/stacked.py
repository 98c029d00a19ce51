"""A trial's seeds in one session call: the train steps of K fast agents as one graph.

``StackedTrainer`` holds each agent's online and target weights and Adam's moments (each
flattened into one variable) and step count, with its own copy of the train ops, all in one
graph, and trains any subset of the agents in one session call: the call feeds their
batches and runs each one's ``gradient_steps`` DQN updates on its own variables.
The agents keep everything else: their Keras models (built in their own graphs, so the
initial weights are those a seed gets alone), replay memories, random streams and envs.
Each agent's ops have the same shapes whatever stands beside it, so a seed trains bit for
bit the same alone or beside others, and the same as in the fast agent's own graph (the
same kernels: ``tests/test_stacked.py``): TensorFlow's CPU kernels
round differently for other shapes, which ruled out one batched product over all agents
(the agents of a call padded to a fixed width cost 2x at K=1 with 64-unit networks).
A batch is fed field-major (states, actions, rewards as rows), so the graph splits it
without a strided copy.

The update is ``FastDQNAgent``'s (Huber loss on the taken action, double DQN, dueling,
soft or hard target updates) with tf-keras' legacy Adam's own kernel
(``ResourceApplyAdam``), each agent with its own step count: an agent trains one
call more at some episode ends, as keras-rl2 does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from rltrain import compat

# With one thread, the stack's session runs every op in the caller's thread (a negative
# inter-op pool size): a call then costs ~3 us beyond its ops instead of ~50 us of hand-off
# to the pool's thread and back. More threads keep a pool, so agents' updates can run side
# by side. False: the pool at one thread too (before 5a4f649; bench/trainstep.py compares).
CALLER_THREAD = True


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
        self.graph = tf.Graph()
        self._calls: dict[tuple[int, ...], Any] = {}  # a callable per set of agents trained
        with self.graph.as_default():
            # Each agent's batches are fed field-major, (gradient_steps, 2 width + 3, batch):
            # splitting them into states, actions and rewards is then contiguous (a split
            # across columns cost as much as a matmul).
            fields = (a.gradient_steps, 2 * a.state_width + 3, a.batch_size)
            # Per agent: its online and target weights, Adam's m and v (each flattened, the
            # target starting as the online weights, as after compile) and Adam's step.
            self._vars, self._batch, self._out, self._hard = [], [], [], []
            for k, w in enumerate(weights):
                flat = _flatten(w)
                zeros = np.zeros_like(flat)
                names = ("online", "target", "m", "v")
                agent_vars = _Vars(*(tf.Variable(x, name=f"agent{k}_{n}") for x, n in
                                     zip((flat, flat, zeros, zeros), names, strict=True)),
                                   tf.Variable(0.0, name=f"agent{k}_step"))
                batch = tf.compat.v1.placeholder(tf.float32, fields)
                self._vars.append(agent_vars)
                self._batch.append(batch)
                self._out.append(self._train_ops(a, agent_vars, batch))
                self._hard.append(agent_vars.target.assign(agent_vars.online.read_value()))
            inline = CALLER_THREAD and threads == 1
            config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads,
                                              inter_op_parallelism_threads=-1 if inline
                                              else threads)
            self.session = tf.compat.v1.Session(graph=self.graph, config=config)
            self.session.run(tf.compat.v1.global_variables_initializer())

    # -- the graph ----------------------------------------------------------------------
    def _train_ops(self, a: Any, v: _Vars, batch: Any) -> Any:
        """One agent's ``gradient_steps`` updates, each on its own chunk of ``batch``;
        returns ``(1, 3 + P)``: mean loss, mae, mean_q, then the new online weights."""
        import tensorflow as tf

        adam = a.optimizer_config
        lr, beta_1, beta_2, epsilon = (tf.constant(float(adam[k])) for k in
                                       ("learning_rate", "beta_1", "beta_2", "epsilon"))
        metrics, done = [], []
        for chunk in tf.unstack(batch):  # each step after the one before
            with tf.control_dependencies(done):
                online, target, step = (x.read_value() for x in (v.online, v.target, v.step))
            loss, stats = self._loss(a, online, target, chunk)
            grad = tf.gradients(loss, online)[0]
            step = step + 1
            done = [v.step.assign(step), tf.raw_ops.ResourceApplyAdam(  # as tf-keras' Adam
                var=v.online.handle, m=v.m.handle, v=v.v.handle,
                beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step), lr=lr,
                beta1=beta_1, beta2=beta_2, epsilon=epsilon, grad=grad)]
            if a.target_model_update < 1:  # from the online weights before this update
                tau = a.target_model_update
                done.append(v.target.assign(tau * online + (1 - tau) * target))
            metrics.append(stats)
        summary = metrics[0] if len(metrics) == 1 else tf.reduce_mean(  # as the own graph
            tf.stack(metrics), axis=0)
        with tf.control_dependencies(done):
            return tf.concat([summary, v.online.read_value()], axis=0)[None]

    def _layers(self, flat: Any) -> list[tuple[Any, Any]]:
        """(kernel, bias) per Dense layer from flat weights ``(P,)``."""
        import tensorflow as tf

        parts = tf.split(flat, self._sizes)
        shaped = [tf.reshape(p, s) for p, s in zip(parts, self._shapes, strict=True)]
        return list(zip(shaped[::2], shaped[1::2], strict=True))

    def _q(self, a: Any, layers: list[tuple[Any, Any]], x: Any) -> Any:
        """Q-values ``(B, actions)`` of states ``(width, B)``, as ``compute_q_values``."""
        import tensorflow as tf

        for i, ((kernel, bias), layer) in enumerate(zip(layers, a._dense, strict=True)):
            x = layer.activation(tf.nn.bias_add(tf.matmul(x, kernel, transpose_a=i == 0), bias))
        if a.enable_dueling_network:
            value, advantage = x[..., :1], x[..., 1:]
            if a.dueling_type == "avg":
                x = value + advantage - tf.reduce_mean(advantage, axis=-1, keepdims=True)
            elif a.dueling_type == "max":
                x = value + advantage - tf.reduce_max(advantage, axis=-1, keepdims=True)
            else:
                x = value + advantage
        return x

    def _loss(self, a: Any, online: Any, target: Any, batch: Any) -> tuple[Any, Any]:
        """The mean Huber loss on a batch of packed rows and ``[loss, mae, mean_q]``."""
        import tensorflow as tf

        from rltrain.fast import _huber

        width = a.state_width
        state0, state1, action, reward, not_terminal = tf.split(batch, [width, width, 1, 1, 1])
        action = tf.reshape(action, (-1, 1))
        reward, not_terminal = reward[0], not_terminal[0]
        layers = self._layers(online)
        q = self._q(a, layers, state0)
        target_q = self._q(a, self._layers(target), state1)
        if a.enable_double_dqn:  # the online network picks, the target network values
            best = tf.argmax(self._q(a, layers, state1), axis=-1, output_type=tf.int32)
            next_q = tf.gather(target_q, best, batch_dims=1)
        else:
            next_q = tf.reduce_max(target_q, axis=-1)
        goal = tf.stop_gradient(reward + a.gamma * not_terminal * next_q)
        # The taken action's column (an Equal on the float column: cheaper than one_hot).
        mask = tf.cast(tf.equal(action, tf.range(a.nb_actions, dtype=tf.float32)), tf.float32)
        error = goal - tf.reduce_sum(q * mask, axis=-1)
        loss = tf.reduce_mean(_huber(error, a.delta_clip))
        mae = tf.reduce_mean(tf.abs(mask * goal[:, None] - q))
        mean_q = tf.reduce_mean(tf.reduce_max(q, axis=-1))
        return loss, tf.stack([loss, mae, mean_q])

    # -- calls --------------------------------------------------------------------------
    def train(self, agents: Sequence[Any]) -> list[list[float]]:
        """Run the pending steps of ``agents`` (each has called ``backward`` and got
        ``DEFERRED``): one call for their train steps, one for hard target updates;
        returns each agent's step metrics."""
        trained = [a for a in agents if a.pending_batch is not None]
        rows: dict[int, np.ndarray] = {}
        if trained:
            out = self._call(tuple(self.rows[id(a)] for a in trained))(
                *(_fields(a.pending_batch, a.gradient_steps) for a in trained))
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
        return self.session.run(self._vars[self.rows[id(agent)]].target)

    def close(self) -> None:
        for agent in self.agents:
            agent.detach()
        self.session.close()


class _Vars(NamedTuple):
    """One agent's variables in the stack."""

    online: Any
    target: Any
    m: Any
    v: Any
    step: Any


def _fields(rows: np.ndarray, gradient_steps: int) -> np.ndarray:
    """Packed rows ``(gradient_steps * B, F)`` as the graph takes them: ``(steps, F, B)``."""
    return np.ascontiguousarray(rows.reshape(gradient_steps, -1, rows.shape[1]).transpose(0, 2, 1))


def _flatten(weights: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(w, np.float32).ravel() for w in weights])
