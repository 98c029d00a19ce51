"""Build the keras-rl2 DQN agent (model, memory, policy) from the ``agent`` config."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from rltrain import compat


def build_model(cfg: DictConfig, obs_shape: tuple[int, ...], nb_actions: int,
                input_scale: float = 1.0) -> Any:
    """The Q-network for states of ``window_length`` observations.

    With ``model.filters`` empty, the tutorial's: Flatten, ``layers`` x Dense(``units``),
    linear Q outputs. Otherwise (frames ``(window, h, w)``), keras-rl's Atari network:
    the window becomes the channels, then one Conv2D per entry of ``filters``/
    ``kernel_size``/``strides``, Flatten and the same Dense head. ``input_scale`` != 1
    (1/255 for uint8 frames) rescales the input inside the model.
    """
    keras = compat.load()
    m = cfg.model
    layers: list[Any] = [keras.layers.InputLayer(input_shape=(cfg.memory.window_length,
                                                              *obs_shape))]
    if m.filters:
        layers.append(keras.layers.Permute((2, 3, 1)))  # (window, h, w) -> (h, w, window)
    if input_scale != 1.0:
        layers.append(keras.layers.Rescaling(input_scale))
    layers += [keras.layers.Conv2D(filters, kernel, strides=stride, activation=m.activation)
               for filters, kernel, stride in zip(m.filters, m.kernel_size, m.strides,
                                                  strict=True)]
    layers.append(keras.layers.Flatten())
    layers += [keras.layers.Dense(m.units, activation=m.activation) for _ in range(m.layers)]
    layers.append(keras.layers.Dense(nb_actions, activation="linear"))
    return keras.Sequential(layers)


def build_policies(cfg: DictConfig, streams: Any = None) -> tuple[Any, Any]:
    """Training policy (annealed epsilon-greedy) and test policy (greedy or annealed).

    With ``streams`` (the fast agent's own random streams) exploration draws from them,
    otherwise from ``numpy.random`` as in keras-rl2.
    """
    from rl.policy import EpsGreedyQPolicy, GreedyQPolicy, LinearAnnealedPolicy

    def eps_greedy() -> Any:
        if streams is None:
            return EpsGreedyQPolicy()
        from rltrain.fast import OwnEpsGreedyQPolicy

        return OwnEpsGreedyQPolicy(streams)

    p = cfg.policy
    policy = LinearAnnealedPolicy(eps_greedy(), attr="eps", value_max=p.value_max,
                                  value_min=p.value_min, value_test=p.value_test,
                                  nb_steps=p.nb_steps)
    if cfg.test_policy == "annealed":
        test_policy = LinearAnnealedPolicy(eps_greedy(), attr="eps",
                                           value_max=p.value_max, value_min=p.value_min,
                                           value_test=p.value_test, nb_steps=p.nb_steps)
    else:
        test_policy = GreedyQPolicy()
    return policy, test_policy


def dqn_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """DQNAgent's keyword arguments that come straight from the config."""
    return {
        "nb_steps_warmup": cfg.nb_steps_warmup,
        "target_model_update": cfg.target_model_update,
        "gamma": cfg.gamma,
        "batch_size": cfg.batch_size,
        "train_interval": cfg.train_interval,
        "memory_interval": cfg.memory_interval,
        "delta_clip": cfg.delta_clip,
        "enable_double_dqn": cfg.enable_double_dqn,
        "enable_dueling_network": cfg.enable_dueling_network,
        "dueling_type": cfg.dueling_type,
    }


def build_agent(cfg: DictConfig, obs_shape: tuple[int, ...], nb_actions: int,
                seed: int = 0, input_scale: float = 1.0) -> Any:
    """A compiled DQN agent for the ``agent`` config.

    ``cfg.impl`` picks the implementation: ``fast`` (FastDQNAgent + FastSequentialMemory,
    the same algorithm with one session call per training step, drawing from its own
    random streams seeded with ``seed``) or ``keras-rl`` (stock DQNAgent +
    SequentialMemory, drawing from the global ``random`` and ``numpy.random``).
    ``input_scale`` multiplies observations inside the model (``rltrain.envs.input_scale``).
    """
    model = build_model(cfg, obs_shape, nb_actions, input_scale)
    if cfg.impl == "fast":
        from rltrain.fast import FastDQNAgent, FastSequentialMemory, Streams

        streams = Streams(seed, cfg.memory.sampling)
        policy, test_policy = build_policies(cfg, streams)
        memory = FastSequentialMemory(limit=cfg.memory.limit, streams=streams,
                                      window_length=cfg.memory.window_length)
        agent = FastDQNAgent(memory=memory, bootstrap_on_truncation=cfg.bootstrap_on_truncation,
                             gradient_steps=cfg.gradient_steps,
                             model=model, nb_actions=nb_actions, policy=policy,
                             test_policy=test_policy, **dqn_kwargs(cfg))
    else:
        from rl.agents.dqn import DQNAgent
        from rl.memory import SequentialMemory

        policy, test_policy = build_policies(cfg)
        memory = SequentialMemory(limit=cfg.memory.limit,
                                  window_length=cfg.memory.window_length)
        agent = DQNAgent(memory=memory, model=model, nb_actions=nb_actions, policy=policy,
                         test_policy=test_policy, **dqn_kwargs(cfg))
    with compat.trusted_lambdas():
        agent.compile(compat.adam(cfg.lr), metrics=["mae"])
    return agent
