"""The fast DQN agent and replay memory: keras-rl2's algorithm without Keras' call overhead.

``FastDQNAgent`` is a ``DQNAgent`` with the same constructor arguments and the same
update (Huber loss on the taken action, soft or hard target updates, double DQN,
dueling, gamma, batch size, train interval). What changes is how it is called:

- one TensorFlow session call per training step computes the targets, the loss and the
  metrics, applies Adam and the soft target update, and returns the updated weights;
- actions come from a numpy forward pass over those weights (no session call);
- ``FastSequentialMemory`` keeps transitions in preallocated numpy arrays (uint8 frames
  stay uint8, anything else is float32) and gathers a batch with fancy indexing, drawing
  its indices in one vectorised call (keras-rl2's distribution; ``Streams`` with
  ``sampling="keras-rl"``: keras-rl2's exact random calls).

The memory also records time-limit truncation apart from termination:
with ``bootstrap_on_truncation=True`` a truncated episode bootstraps from its last
state (keras-rl2 treats truncation as a terminal, a known DQN bias).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from rl.agents.dqn import DQNAgent
from rl.memory import Experience, Memory
from rl.policy import EpsGreedyQPolicy, GreedyQPolicy
from rl.util import clone_model

from rltrain import compat
from rltrain.config import SAMPLING
from rltrain.loop import DEFERRED

ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "selu": lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x)),
    "softplus": lambda x: np.logaddexp(x, 0),
    "swish": lambda x: x / (1 + np.exp(-x)),
}


class Streams:
    """An agent's own random streams, seeded like the global ones keras-rl2 uses.

    ``py`` stands for Python's ``random`` (replay indices drawn without replacement) and
    ``np`` for ``numpy.random`` (exploration, and indices drawn with replacement), so one
    agent draws exactly what stock keras-rl2 draws after ``random.seed(seed)`` and
    ``np.random.seed(seed)``, and agents trained side by side never share a stream.

    ``sampling="fast"`` (the default) draws replay indices from ``gen``, a numpy Generator,
    in one vectorised call per batch (and one per round of re-draws after terminals): the
    same distribution as keras-rl2's (uniform over the valid transitions, without
    replacement), not the same numbers. ``"keras-rl"`` keeps keras-rl2's exact stream
    (``random.sample`` over a range: one Python call per index).
    """

    def __init__(self, seed: int, sampling: str = "fast") -> None:
        if sampling not in SAMPLING:
            raise ValueError(f"sampling={sampling!r}: one of {', '.join(SAMPLING)}")
        self.py = random.Random(seed)
        self.np = np.random.RandomState(seed)
        self.gen = np.random.default_rng(seed)
        self.exact = sampling == "keras-rl"

    def batch_indexes(self, low: int, high: int, size: int) -> list[int] | np.ndarray:
        """keras-rl2's ``sample_batch_indexes`` on these streams (without its warning:
        a batch larger than the memory is drawn with replacement, as keras-rl2 does)."""
        if not self.exact:
            if high - low >= size:
                return low + self.gen.choice(high - low, size, replace=False)
            return self.gen.integers(low, high, size=size)
        if high - low >= size:
            return self.py.sample(range(low, high), size)
        return self.np.randint(low, high, size=size)  # = np.random.random_integers(low, high-1)


class OwnEpsGreedyQPolicy(EpsGreedyQPolicy):
    """keras-rl2's ``EpsGreedyQPolicy`` drawing from an agent's own numpy stream."""

    def __init__(self, streams: Streams, eps: float = 0.1) -> None:
        super().__init__(eps=eps)
        self.streams = streams

    def select_action(self, q_values: np.ndarray) -> int:
        rng = self.streams.np
        if rng.random_sample() < self.eps:  # = rng.uniform(), without its argument parsing
            return int(rng.randint(0, q_values.shape[0]))
        return int(q_values.argmax())


class FastSequentialMemory(Memory):
    """``SequentialMemory`` on preallocated ring arrays, with vectorised sampling.

    Observations are stored in their own dtype when it is uint8 (Atari frames: 7 KB
    each), else as float32.

    Same semantics as keras-rl2's (limit, window_length, episode boundaries, the first
    stored state never sampled, transitions after a terminal resampled), same random
    calls (on the agent's own ``streams``), plus a ``truncated`` flag per transition.
    """

    def __init__(self, limit: int, streams: Streams | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limit = limit
        self.streams = streams or Streams(0)
        self.observations: np.ndarray | None = None  # allocated on the first append
        self.actions = np.zeros(limit, dtype=np.int64)
        self.rewards = np.zeros(limit, dtype=np.float32)
        self.terminals = np.zeros(limit, dtype=bool)
        self.truncations = np.zeros(limit, dtype=bool)
        self._start = 0  # physical slot of the oldest entry
        self._size = 0
        # window_length 1, float observations: each transition's train-step row
        # [state0 | state1 | action | reward | not_terminal1], written once when its state1
        # arrives (at the slot of that entry), so a batch is one gather.
        self.rows: np.ndarray | None = None

    @property
    def nb_entries(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        """Bytes of the preallocated arrays (observations once the first one is stored)."""
        arrays = [self.actions, self.rewards, self.terminals, self.truncations]
        if self.observations is not None:
            arrays.append(self.observations)
        return sum(a.nbytes for a in arrays)

    def append(self, observation: Any, action: int, reward: float, terminal: bool,
               training: bool = True, truncated: bool = False) -> None:
        """Store a transition; ``terminal`` as keras-rl2, ``truncated``: time limit hit."""
        super().append(observation, action, reward, terminal, training=training)
        if not training:
            return
        if self.observations is None:
            observation = np.asarray(observation)
            dtype = observation.dtype if observation.dtype == np.uint8 else np.float32
            self.observations = np.zeros((self.limit, *observation.shape), dtype=dtype)
            if self.window_length == 1 and dtype == np.float32:
                self.rows = np.zeros((self.limit, 2 * observation.size + 3), np.float32)
        if self._size < self.limit:
            slot = (self._start + self._size) % self.limit
            self._size += 1
        else:
            slot = self._start
            self._start = (self._start + 1) % self.limit
        self.observations[slot] = observation
        if self.rows is not None and self._size > 1:  # the transition this state ends
            before = (slot - 1) % self.limit
            width = self.observations[0].size
            row = self.rows[slot]
            row[:width] = self.observations[before].ravel()
            row[width:2 * width] = self.observations[slot].ravel()
            row[2 * width:] = (self.actions[before], self.rewards[before],
                               not self.terminals[before])
        self.actions[slot] = action
        self.rewards[slot] = reward
        self.terminals[slot] = terminal
        self.truncations[slot] = truncated

    def _slots(self, logical: np.ndarray) -> np.ndarray:
        """Physical slots of logical indexes (from -limit up); only for reading: until the
        ring wraps, numpy's negative indexing is the modulo."""
        if self._start == 0:
            return logical
        return (logical + self._start) % self.limit

    def draw_indexes(self, batch_size: int, batch_idxs: Any = None) -> np.ndarray:
        """Logical indexes ``idx`` of the transitions (idx-1 -> idx), as keras-rl2 draws them."""
        assert self.nb_entries >= self.window_length + 2, "not enough entries in the memory"
        if batch_idxs is None:
            batch_idxs = self.streams.batch_indexes(self.window_length, self.nb_entries - 1,
                                                    size=batch_size)
        idx = np.asarray(batch_idxs, dtype=np.int64) + 1
        assert len(idx) == batch_size
        after_terminal = self.terminals.take(self._slots(idx - 2))
        if not self.streams.exact:  # every re-draw of a round in one call
            return self._redraw(idx, after_terminal.nonzero()[0])
        for k in np.flatnonzero(after_terminal):  # in order: the same random calls as stock
            i = idx[k]
            while self.terminals[self._slots(np.int64(i - 2))]:
                i = self.streams.batch_indexes(self.window_length + 1, self.nb_entries, size=1)[0]
            idx[k] = i
        return idx

    def _redraw(self, idx: np.ndarray, again: np.ndarray) -> np.ndarray:
        """Draw ``idx[again]`` again until none follows a terminal, each round in one call;
        only the indexes just drawn again need a new look."""
        low, n, gen = self.window_length + 1, self._size, self.streams.gen
        while again.size:
            drawn = gen.integers(low, n, size=again.size)
            idx[again] = drawn
            again = again[self.terminals[self._slots(drawn - 2)]]
        return idx

    def states(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """state0 and state1 windows ``(B, window_length, *obs_shape)`` for indexes ``idx``."""
        assert self.observations is not None
        obs = self.observations
        last = idx - 1
        if self.window_length == 1:
            return obs[self._slots(last)][:, None], obs[self._slots(idx)][:, None]
        w = self.window_length
        back = np.arange(w - 1, -1, -1)  # column j holds observation last - (w - 1 - j)
        state0 = obs[self._slots(last[:, None] - back[None, :])]
        if not self.ignore_episode_boundaries:
            # Column w-2-o is kept while no terminal precedes it within the window.
            ends = self.terminals[self._slots(last[:, None] - 2 - np.arange(w - 1)[None, :])]
            keep = np.cumprod(~ends, axis=1).astype(bool)[:, ::-1]
            mask = np.concatenate([keep, np.ones((len(idx), 1), dtype=bool)], axis=1)
            state0 = state0 * mask.reshape(mask.shape + (1,) * (obs.ndim - 1))
        state1 = np.concatenate([state0[:, 1:], obs[self._slots(idx)][:, None]], axis=1)
        return state0, state1

    def sample_arrays(self, batch_size: int, batch_idxs: Any = None,
                      bootstrap_on_truncation: bool = False) -> tuple[np.ndarray, ...]:
        """``(state0, action, reward, state1, terminal1)`` as arrays, one row per transition."""
        idx = self.draw_indexes(batch_size, batch_idxs)
        state0, state1 = self.states(idx)
        slots = self._slots(idx - 1)
        return (state0, self.actions[slots], self.rewards[slots], state1,
                self._terminal1(slots, bootstrap_on_truncation))

    def _terminal1(self, slots: np.ndarray, bootstrap_on_truncation: bool) -> np.ndarray:
        """Whether each transition from ``slots`` ends its episode for the target (a
        truncated one does not, with ``bootstrap_on_truncation``)."""
        terminal1 = self.terminals[slots]
        if bootstrap_on_truncation:
            terminal1 = terminal1 & ~self.truncations[slots]
        return terminal1

    def sample_rows(self, batch_size: int, bootstrap_on_truncation: bool = False) -> np.ndarray:
        """A batch as the train step's packed rows (needs ``rows``: window_length 1 and
        float observations): the transitions ``sample_arrays`` would draw."""
        assert self.rows is not None, "packed rows need window_length 1, float observations"
        idx = self.draw_indexes(batch_size)
        batch = self.rows.take(self._slots(idx), axis=0)
        if bootstrap_on_truncation:  # the rows hold keras-rl2's not_terminal1
            batch[:, -1] = ~self._terminal1(self._slots(idx - 1), True)
        return batch

    def sample(self, batch_size: int, batch_idxs: Any = None) -> list[Experience]:
        """keras-rl2's interface: a list of ``Experience`` tuples."""
        s0, a, r, s1, t1 = self.sample_arrays(batch_size, batch_idxs)
        return [Experience(state0=list(s0[i]), action=int(a[i]), reward=float(r[i]),
                           state1=list(s1[i]), terminal1=bool(t1[i])) for i in range(len(a))]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "limit": self.limit}


class FastDQNAgent(DQNAgent):
    """keras-rl2's ``DQNAgent`` with one session call per training step.

    Takes DQNAgent's arguments, plus ``bootstrap_on_truncation`` (needs a
    ``FastSequentialMemory``) and ``gradient_steps`` (gradient steps per train call, each on
    its own batch and with its own soft target update, all in the one session call).
    ``compile(optimizer)`` takes a legacy tf-keras optimizer.
    """

    records_truncation = True  # the training loop passes `truncated` to backward

    def __init__(self, *args: Any, bootstrap_on_truncation: bool = False,
                 gradient_steps: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if gradient_steps < 1:
            raise ValueError(f"gradient_steps={gradient_steps}: must be >= 1")
        self.gradient_steps = gradient_steps
        if self.processor is not None:
            raise ValueError("FastDQNAgent does not support processors")
        if bootstrap_on_truncation and not isinstance(self.memory, FastSequentialMemory):
            raise ValueError("bootstrap_on_truncation needs a FastSequentialMemory")
        self.bootstrap_on_truncation = bootstrap_on_truncation
        self._memory_records_truncation = isinstance(self.memory, FastSequentialMemory)
        self._nb_metrics = 3 + len(self.policy.metrics_names)
        self._stacked = False  # trained by a StackedTrainer (rltrain.stacked) when attached
        self._model_stale = False  # the numpy weights are newer than the Keras model's
        self.pending_batch: np.ndarray | None = None
        self.pending_hard = False

    # -- graph construction -------------------------------------------------------------
    def compile(self, optimizer: Any, metrics: list[Any] | None = None) -> None:
        """Set up the agent; the fused train step is built when first called (an agent a
        stacked trainer trains never needs it). ``metrics`` is ignored (loss, mae, mean_q
        are fixed)."""
        import tensorflow as tf

        keras = compat.load()
        self.target_model = clone_model(self.model, self.custom_model_objects)
        self._numpy_forward = self._supports_numpy_forward(keras)
        # The numpy forward needs the Dense weights after each step; other models (conv)
        # act through the session instead, and the step returns only its metrics.
        self._dense = [layer for layer in self.model.layers
                       if isinstance(layer, keras.layers.Dense)] if self._numpy_forward else []
        online_vars = self._online_vars()
        self.state_width = int(np.prod(self.model.input.shape[1:]))
        self.optimizer_config = {k: v for k, v in optimizer.get_config().items()
                                 if isinstance(v, str | int | float | bool)}
        self._optimizer, self._step_fn = optimizer, None
        pairs = list(zip(self.target_model.weights, self.model.weights, strict=True))
        self._hard_update = tf.group(*[t.assign(s) for t, s in pairs])
        session = tf.compat.v1.keras.backend.get_session()
        self._session, self._graph = session, session.graph
        if not self._numpy_forward:  # any other Keras model: one session call per action
            self._predict = compat.session_callable(session, self.model.output,
                                                    self.model.input)
        self.update_target_model_hard()
        self._activations = [ACTIVATIONS.get(layer.activation.__name__) for layer in self._dense]
        # Per Dense layer, where the train step's output vector (3 metrics, then the
        # weights) holds its kernel and bias: [(kernel, kernel shape, bias, activation)].
        ends = np.cumsum([3, *(int(np.prod(v.shape)) for v in online_vars)])
        where = [slice(lo, hi) for lo, hi in zip(ends[:-1], ends[1:], strict=True)]
        self._layer_slices = [(where[2 * i], tuple(layer.kernel.shape), where[2 * i + 1],
                               self._activations[i]) for i, layer in enumerate(self._dense)]
        self.sync_weights()
        self.compiled = True

    def _online_vars(self) -> list[Any]:
        """The Dense layers' kernels and biases, in ``get_weights`` order."""
        return [v for layer in self._dense for v in (layer.kernel, layer.bias)]

    def _train_step(self, batch: np.ndarray) -> np.ndarray:
        """The fused train step on a packed batch: ``[loss, mae, mean_q, *weights]``."""
        if self._step_fn is None:
            with self._own_graph():
                self._step_fn = self._build_train_step(self._optimizer)
        return self._step_fn(batch)

    def _build_train_step(self, optimizer: Any) -> Callable[[np.ndarray], np.ndarray]:
        """One session call: ``gradient_steps`` updates, each on its own batch."""
        import tensorflow as tf

        width = self.state_width
        state_shape = tuple(self.model.input.shape[1:])
        online_vars = self._online_vars()
        # One packed feed per train call: gradient_steps batches of rows
        # [state0 | state1 | action | reward | not_terminal1], one step per batch, in order.
        batch = tf.compat.v1.placeholder(tf.float32, (None, 2 * width + 3), name="batch")
        chunks = [batch] if self.gradient_steps == 1 else tf.split(
            batch, self.gradient_steps, axis=0)
        pairs = list(zip(self.target_model.weights, self.model.weights, strict=True))
        step_ops: list[Any] = []
        step_metrics = []
        for chunk in chunks:  # each step reads the weights the one before it wrote
            with tf.control_dependencies(step_ops):
                step_ops, metrics = self._train_step_ops(chunk, width, state_shape, optimizer,
                                                         pairs)
            step_metrics.append(metrics)
        summary = step_metrics[0] if len(step_metrics) == 1 else tf.reduce_mean(
            tf.stack(step_metrics), axis=0)  # the steps' mean loss, mae and mean_q
        with tf.control_dependencies(step_ops):
            fetched = [summary]
            fetched += [tf.reshape(v.read_value(), (-1,)) for v in online_vars]
            out = tf.concat(fetched, axis=0)
        tf.compat.v1.keras.backend.get_session()  # Keras initialises Adam's hyperparameters
        self._session.run(tf.compat.v1.variables_initializer(optimizer.variables()))
        return compat.session_callable(self._session, out, batch)

    def _train_step_ops(self, batch: Any, width: int, state_shape: tuple[int, ...],
                        optimizer: Any, pairs: list[tuple[Any, Any]]) -> tuple[list[Any], Any]:
        """One gradient step on ``batch``: its ops and ``[loss, mae, mean_q]``; ``pairs``:
        (target, online) weights."""
        import tensorflow as tf

        state0 = tf.reshape(batch[:, :width], (-1, *state_shape))
        state1 = tf.reshape(batch[:, width:2 * width], (-1, *state_shape))
        action = tf.cast(batch[:, 2 * width], tf.int32)
        reward = batch[:, 2 * width + 1]
        not_terminal = batch[:, 2 * width + 2]

        q = self.model(state0)
        target_q = self.target_model(state1)
        if self.enable_double_dqn:  # the online network picks, the target network values
            best = tf.argmax(self.model(state1), axis=1, output_type=tf.int32)
            next_q = tf.reduce_sum(target_q * tf.one_hot(best, self.nb_actions), axis=1)
        else:
            next_q = tf.reduce_max(target_q, axis=1)
        target = tf.stop_gradient(reward + self.gamma * not_terminal * next_q)
        mask = tf.one_hot(action, self.nb_actions)
        error = target - tf.reduce_sum(q * mask, axis=1)
        loss = tf.reduce_mean(_huber(error, self.delta_clip))
        mae = tf.reduce_mean(tf.abs(mask * target[:, None] - q))  # keras-rl2's "mae" metric
        mean_q = tf.reduce_mean(tf.reduce_max(q, axis=1))

        soft: list[Any] = []
        if self.target_model_update < 1:
            # As stock keras-rl2 runs it: the soft update uses the online weights from
            # before this step's gradient update.
            tau = self.target_model_update
            soft = [tau * s.read_value() + (1 - tau) * t.read_value() for t, s in pairs]
        with tf.control_dependencies(soft):
            updates = optimizer.get_updates(loss=loss, params=self.model.trainable_weights)
        step_ops = list(updates)
        if soft:  # written after the update, which needs the loss, which read the target
            with tf.control_dependencies(updates):
                step_ops += [t.assign(v) for (t, _), v in zip(pairs, soft, strict=True)]
        return step_ops, tf.stack([loss, mae, mean_q])

    def _supports_numpy_forward(self, keras: Any) -> bool:
        """A plain Flatten/Dense stack (optionally with keras-rl2's dueling head)."""
        for layer in self.model.layers:
            if isinstance(layer, keras.layers.Dense):
                if layer.activation.__name__ not in ACTIVATIONS:
                    return False
            elif not isinstance(layer, keras.layers.Flatten | keras.layers.InputLayer) and not (
                    self.enable_dueling_network and layer is self.model.layers[-1]):
                return False
        return True

    # -- weights --------------------------------------------------------------------------
    def _set_weights(self, arrays: list[np.ndarray]) -> None:
        """Cache the online weights (kernel, bias per Dense layer) for the numpy forward."""
        self._layers = [(arrays[2 * i], arrays[2 * i + 1], self._activations[i])
                        for i in range(len(self._dense))]

    def _take_weights(self, out: np.ndarray) -> None:
        """The numpy forward's weights from a train step's output vector (views, no
        copies): ``_set_weights`` in one pass, as every train step needs it."""
        self._layers = [(out[kernel].reshape(shape), out[bias], activation)
                        for kernel, shape, bias, activation in self._layer_slices]

    def sync_weights(self) -> None:
        """Refresh the numpy copy after the Keras model's weights were set from outside."""
        self._set_weights(self.model.get_weights() if self._dense else [])
        self._model_stale = False

    def current_weights(self) -> list[np.ndarray]:
        """The online weights now, as ``model.get_weights()`` orders them (copies)."""
        if not self._numpy_forward:
            return self.model.get_weights()
        return [np.array(w) for kernel, bias, _ in self._layers for w in (kernel, bias)]

    @contextmanager
    def _own_graph(self) -> Iterator[None]:
        """This agent's graph and session as TensorFlow's defaults (a stacked agent's loop
        runs outside them)."""
        with self._graph.as_default(), self._session.as_default():
            yield

    def write_model_weights(self) -> None:
        """Bring the Keras model up to the numpy weights a stacked trainer left."""
        if self._model_stale:
            with self._own_graph():
                self.model.set_weights(self.current_weights())
            self._model_stale = False

    def save_weights(self, filepath: str, overwrite: bool = False) -> None:
        self.write_model_weights()
        with self._own_graph():
            super().save_weights(filepath, overwrite=overwrite)

    def load_weights(self, filepath: str) -> None:
        super().load_weights(filepath)
        self.sync_weights()

    # -- training in a stack ----------------------------------------------------------------
    @property
    def stacked(self) -> bool:
        """Whether a ``StackedTrainer`` runs this agent's train steps."""
        return self._stacked

    def attach(self) -> None:
        """From now on ``backward`` leaves its train step pending (it returns ``DEFERRED``)
        for a ``StackedTrainer`` to run beside other agents' (``complete_step``)."""
        self._stacked = True

    def detach(self) -> None:
        self._stacked = False
        self.pending_batch, self.pending_hard = None, False

    def complete_step(self, out: np.ndarray | None) -> list[float]:
        """Take the stacked train step's output row (None: no train step was pending);
        return the step's metrics, as ``backward`` does."""
        self.pending_batch, self.pending_hard = None, False
        if out is None:
            return [np.nan] * self._nb_metrics
        self._take_weights(out)
        self._model_stale = True
        return [out[0], out[1], out[2], *self.policy.metrics]

    def update_target_model_hard(self) -> None:
        with self._own_graph():
            self._session.run(self._hard_update)

    # -- acting and learning --------------------------------------------------------------
    def compute_q_values(self, state: Any) -> np.ndarray:
        if not self._numpy_forward:
            return self._predict(np.asarray([state], dtype=np.float32))[0]
        return self._q(np.asarray(state, dtype=np.float32).reshape(1, -1))[0]

    def _q(self, x: np.ndarray) -> np.ndarray:
        """The numpy forward of rows ``(..., 1, width)``: Q-values ``(..., 1, actions)``.
        A stack of rows runs numpy's one-row product per row, so each row's Q-values are
        the bits it gets alone (``tests/test_fast.py`` checks)."""
        for kernel, bias, activation in self._layers:
            x = np.matmul(x, kernel)
            x += bias
            x = activation(x)
        if self.enable_dueling_network:
            value, advantage = x[..., :1], x[..., 1:]
            if self.dueling_type == "avg":
                x = value + advantage - advantage.mean(axis=-1, keepdims=True)
            elif self.dueling_type == "max":
                x = value + advantage - advantage.max(axis=-1, keepdims=True)
            else:
                x = value + advantage
        return x

    @property
    def plays_side_by_side(self) -> bool:
        """Whether ``greedy_actions`` can play test episodes side by side: a numpy forward,
        states of one observation, and a greedy test policy (it draws nothing)."""
        return (self._numpy_forward and self.memory.window_length == 1
                and type(self.test_policy) is GreedyQPolicy)

    def greedy_actions(self, observations: np.ndarray) -> np.ndarray:
        """The greedy test policy's actions for observations ``(B, *shape)`` in one
        forward: each the action ``forward`` takes on it alone (the first best)."""
        x = np.asarray(observations, dtype=np.float32).reshape(len(observations), 1, -1)
        return self._q(x)[:, 0].argmax(axis=1)

    def forward(self, observation: Any) -> int:
        state = self.memory.get_recent_state(observation)
        q_values = self.compute_q_values(state)
        policy = self.policy if self.training else self.test_policy
        action = policy.select_action(q_values=q_values)
        self.recent_observation = observation
        self.recent_action = action
        return action

    def backward(self, reward: float, terminal: bool, truncated: bool = False) -> list[float]:
        if self.step % self.memory_interval == 0:
            extra = {"truncated": truncated} if self._memory_records_truncation else {}
            self.memory.append(self.recent_observation, self.recent_action, reward, terminal,
                               training=self.training, **extra)
        metrics = [np.nan] * self._nb_metrics
        if not self.training:
            return metrics
        if self._stacked:
            return self._defer()
        if self.step > self.nb_steps_warmup and self.step % self.train_interval == 0:
            out = self._train_step(self._pack_batch())
            self._take_weights(out)
            metrics = [out[0], out[1], out[2], *self.policy.metrics]
        if self.target_model_update >= 1 and self.step % self.target_model_update == 0:
            self.update_target_model_hard()
        return metrics

    def _defer(self) -> Any:
        """``backward``'s train step and hard target update, left for the stack: DEFERRED
        when there is one, else the metrics of a step without training."""
        if self.step > self.nb_steps_warmup and self.step % self.train_interval == 0:
            self.pending_batch = self._pack_batch()
        self.pending_hard = (self.target_model_update >= 1
                             and self.step % self.target_model_update == 0)
        if self.pending_batch is None and not self.pending_hard:
            return [np.nan] * self._nb_metrics
        return DEFERRED

    def _pack_batch(self) -> np.ndarray:
        """Sample ``gradient_steps`` batches and pack them into the train step's one feed."""
        packed = [self._pack_one() for _ in range(self.gradient_steps)]
        return packed[0] if len(packed) == 1 else np.concatenate(packed, axis=0)

    def _pack_one(self) -> np.ndarray:
        """One batch as rows ``[state0 | state1 | action | reward | not_terminal1]``."""
        if getattr(self.memory, "rows", None) is not None:
            return self.memory.sample_rows(self.batch_size, self.bootstrap_on_truncation)
        if self._memory_records_truncation:
            s0, a, r, s1, t1 = self.memory.sample_arrays(
                self.batch_size, bootstrap_on_truncation=self.bootstrap_on_truncation)
        else:  # any keras-rl2 memory
            exps = self.memory.sample(self.batch_size)
            s0 = np.array([e.state0 for e in exps], dtype=np.float32)
            s1 = np.array([e.state1 for e in exps], dtype=np.float32)
            a = np.array([e.action for e in exps])
            r = np.array([e.reward for e in exps])
            t1 = np.array([e.terminal1 for e in exps])
        n = len(a)
        return np.concatenate([s0.reshape(n, -1), s1.reshape(n, -1), a[:, None], r[:, None],
                               (~t1)[:, None]], axis=1, dtype=np.float32)

    @property
    def metrics_names(self) -> list[str]:
        return ["loss", "mae", "mean_q", *self.policy.metrics_names]


def _huber(error: Any, clip: float) -> Any:
    """keras-rl2's ``huber_loss``: squared error below ``clip``, linear above."""
    import tensorflow as tf

    squared = 0.5 * tf.square(error)
    if np.isinf(clip):
        return squared
    linear = clip * (tf.abs(error) - 0.5 * clip)
    return tf.where(tf.abs(error) < clip, squared, linear)
