"""The typed config schema, its composition by Hydra, and its validation.

Nothing here imports TensorFlow: bad input is caught before the slow import.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rltrain.secrets import mask_url

DEFAULT_CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
PREPROCESSING = ("none", "atari")
ACTIVATIONS = ("relu", "tanh", "elu", "selu", "gelu", "swish", "sigmoid", "softplus", "linear")


class ConfigError(ValueError):
    """Bad configuration: the message is one line naming the key and the value."""


@dataclass
class AtariConfig:
    frame_skip: int = 4
    noop_max: int = 30
    screen_size: int = 84
    terminal_on_life_loss: bool = False
    clip_rewards: bool = True
    max_num_frames_per_episode: int = 108000  # ALE's episode cap in frames (v5's default)


@dataclass
class EnvConfig:
    id: str = "CartPole-v1"
    reward_threshold: float | None = None
    preprocessing: str = "none"
    atari: AtariConfig = field(default_factory=AtariConfig)


@dataclass
class ModelConfig:
    filters: list[int] = field(default_factory=list)  # Conv2D stack; empty: none (mlp)
    kernel_size: list[int] = field(default_factory=list)
    strides: list[int] = field(default_factory=list)
    units: int = 16
    layers: int = 3
    activation: str = "relu"


@dataclass
class MemoryConfig:
    limit: int = 50000
    window_length: int = 1


@dataclass
class PolicyConfig:
    value_max: float = 1.0
    value_min: float = 0.1
    value_test: float = 0.05
    nb_steps: int = 10000


@dataclass
class AgentConfig:
    impl: str = "fast"
    model: ModelConfig = field(default_factory=ModelConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    test_policy: str = "greedy"
    nb_steps_warmup: int = 10
    target_model_update: float = 0.01
    gamma: float = 0.99
    batch_size: int = 32
    lr: float = 0.001
    train_interval: int = 1
    memory_interval: int = 1
    delta_clip: float = math.inf
    enable_double_dqn: bool = False
    enable_dueling_network: bool = False
    dueling_type: str = "avg"
    bootstrap_on_truncation: bool = False


@dataclass
class TrainConfig:
    nb_steps: int = 50000
    log_interval: int = 100
    checkpoint_interval: int = 5000
    test_episodes: int = 5
    eval_interval: int = 5000
    eval_episodes: int = 5
    keep_best: bool = True
    threads: int = 1
    progress: bool = True


@dataclass
class TrackingConfig:
    uri: str = ""
    experiment: str = "keras-rl-cartpole"
    run_name: str = ""


@dataclass
class Config:
    seed: int = 0
    output_dir: str = ""
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


ConfigStore.instance().store(name="base_config", node=Config)


def compose_config(overrides: list[str] | tuple[str, ...] = (), config_dir: Path | None = None,
                   config_name: str = "config", schema: type | None = None) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with command-line style overrides; raise ConfigError.

    Keys the typed ``schema`` (``Config`` for ``config``) does not have are refused however
    they were added (``+key=...``, ``++key=...``, an experiment file).
    """
    conf_dir = str((config_dir or DEFAULT_CONF_DIR).resolve())
    overrides = [group_choice(o, Path(conf_dir)) for o in overrides]
    try:
        with initialize_config_dir(version_base="1.3", config_dir=conf_dir, job_name="sweep"):
            cfg = compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(_one_line(err)) from err
    schema = schema or (Config if config_name == "config" else None)
    if schema is not None:
        data = OmegaConf.to_container(cfg, resolve=False)
        if unknown := unknown_keys(data, schema):  # type: ignore[arg-type]
            written = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] == unknown[0]]
            raise ConfigError(f"{written[0] if written else unknown[0]}: {unknown[0]} is not a "
                              "key of the config schema ('+' cannot add one)")
    return cfg


def group_choice(override: str, conf_dir: Path) -> str:
    """``agent.model=conv`` -> ``agent/model=conv`` (Hydra's spelling of a nested group
    choice) when ``conf/agent/model/conv.yaml`` exists; any other override as it is.
    A plain name that is no option of its group (``env=pong``) is a ConfigError listing them."""
    key, sep, value = override.partition("=")
    if not sep or key.startswith(("+", "~")):
        return override
    group = conf_dir.joinpath(*key.replace("/", ".").split("."))
    if not group.is_dir():
        return override
    if (group / f"{value}.yaml").is_file():
        return f"{key.replace('.', '/')}={value}"
    if re.fullmatch(r"[\w.-]+", value):
        options = ", ".join(sorted(p.stem for p in group.glob("*.yaml")))
        raise ConfigError(f"{key}={value}: no such option (conf/{group.relative_to(conf_dir)}/"
                          f"{value}.yaml); choose one of {options}")
    return override


def load_saved(path: Path) -> DictConfig:
    """A run's saved ``config.yaml`` on today's schema: a key added since gets its default,
    a wrong type or unknown key fails."""
    return OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.load(path))  # type: ignore[return-value]


def unknown_keys(data: dict[str, Any], schema: type, prefix: str = "") -> list[str]:
    """Dotted keys of ``data`` that the dataclass ``schema`` does not declare (a ``dict``
    field is free-form)."""
    hints = typing.get_type_hints(schema)
    out = []
    for key, value in data.items():
        kind = hints.get(str(key))
        if kind is None:
            out.append(f"{prefix}{key}")
        elif dataclasses.is_dataclass(kind) and isinstance(value, dict):
            out += unknown_keys(value, kind, f"{prefix}{key}.")  # type: ignore[arg-type]
    return out


def _one_line(err: BaseException) -> str:
    """Reduce Hydra/OmegaConf's multi-line errors to one line naming the key."""
    inner: BaseException | None = err
    while inner is not None:
        if isinstance(inner, OmegaConfBaseException) and getattr(inner, "full_key", None):
            msg = str(getattr(inner, "msg", inner)).splitlines()[0]
            return f"{inner.full_key}: {msg}"
        inner = inner.__cause__ or inner.__context__
    first = str(err).strip().splitlines()
    return first[0] if first else type(err).__name__


def validate(cfg: DictConfig) -> None:
    """Check ranges and the environment; raise ConfigError naming the first bad key."""
    a, t = cfg.agent, cfg.train
    checks: list[tuple[str, Any, bool, str]] = [
        ("seed", cfg.seed, cfg.seed >= 0, "must be >= 0"),
        ("agent.impl", a.impl, a.impl in ("fast", "keras-rl"), "must be fast or keras-rl"),
        ("agent.model.units", a.model.units, a.model.units >= 1, "must be >= 1"),
        ("agent.model.layers", a.model.layers, a.model.layers >= 1, "must be >= 1"),
        ("agent.model.activation", a.model.activation, a.model.activation in ACTIVATIONS,
         f"must be one of {', '.join(ACTIVATIONS)}"),
        ("agent.memory.limit", a.memory.limit, a.memory.limit >= 1, "must be >= 1"),
        ("agent.memory.window_length", a.memory.window_length, a.memory.window_length >= 1,
         "must be >= 1"),
        ("agent.policy.value_max", a.policy.value_max, 0 <= a.policy.value_max <= 1,
         "must be in [0, 1]"),
        ("agent.policy.value_min", a.policy.value_min, 0 <= a.policy.value_min <= 1,
         "must be in [0, 1]"),
        ("agent.policy.value_min", a.policy.value_min, a.policy.value_min <= a.policy.value_max,
         f"must be <= agent.policy.value_max ({a.policy.value_max})"),
        ("agent.policy.value_test", a.policy.value_test, 0 <= a.policy.value_test <= 1,
         "must be in [0, 1]"),
        ("agent.policy.nb_steps", a.policy.nb_steps, a.policy.nb_steps >= 1, "must be >= 1"),
        ("agent.test_policy", a.test_policy, a.test_policy in ("greedy", "annealed"),
         "must be greedy or annealed"),
        ("agent.nb_steps_warmup", a.nb_steps_warmup, a.nb_steps_warmup >= min_warmup(cfg),
         f"must be >= {min_warmup(cfg)}: the replay memory needs agent.memory.window_length + 2 "
         f"({a.memory.window_length + 2}) transitions before the first batch"),
        ("agent.target_model_update", a.target_model_update, a.target_model_update > 0,
         "must be > 0 (< 1: soft update rate, >= 1: hard copy interval in steps)"),
        ("agent.gamma", a.gamma, 0 <= a.gamma <= 1, "must be in [0, 1]"),
        ("agent.batch_size", a.batch_size, a.batch_size >= 1, "must be >= 1"),
        ("agent.lr", a.lr, a.lr > 0 and math.isfinite(a.lr), "must be a positive number"),
        ("agent.train_interval", a.train_interval, a.train_interval >= 1, "must be >= 1"),
        ("agent.memory_interval", a.memory_interval, a.memory_interval >= 1, "must be >= 1"),
        ("agent.delta_clip", a.delta_clip, a.delta_clip > 0, "must be > 0 (.inf: plain MSE)"),
        ("agent.dueling_type", a.dueling_type, a.dueling_type in ("avg", "max", "naive"),
         "must be avg, max or naive"),
        ("agent.bootstrap_on_truncation", a.bootstrap_on_truncation,
         a.impl == "fast" or not a.bootstrap_on_truncation, "needs agent.impl=fast"),
        ("train.nb_steps", t.nb_steps, t.nb_steps >= 1, "must be >= 1"),
        ("train.log_interval", t.log_interval, t.log_interval >= 1, "must be >= 1"),
        ("train.checkpoint_interval", t.checkpoint_interval, t.checkpoint_interval >= 0,
         "must be >= 0 (0: no checkpoints)"),
        ("train.test_episodes", t.test_episodes, t.test_episodes >= 0, "must be >= 0"),
        ("train.eval_interval", t.eval_interval, t.eval_interval >= 0,
         "must be >= 0 (0: no evaluation during training)"),
        ("train.eval_episodes", t.eval_episodes, t.eval_episodes >= 1, "must be >= 1"),
        ("train.threads", t.threads, t.threads >= 1, "must be >= 1"),
        ("tracking.experiment", cfg.tracking.experiment, bool(cfg.tracking.experiment.strip()),
         "must not be empty"),
    ]
    for key, value, ok, why in checks + env_checks(cfg.env) + model_checks(cfg):
        if not ok:
            raise ConfigError(f"{key}={value}: {why}")
    check_env(cfg.env)


def model_checks(cfg: DictConfig) -> list[tuple[str, Any, bool, str]]:
    """The conv stack: three lists of one length, positive sizes, frames large enough."""
    m = cfg.agent.model
    filters, kernels, strides = list(m.filters), list(m.kernel_size), list(m.strides)
    atari = cfg.env.preprocessing == "atari"
    side = conv_output_side(cfg.env.atari.screen_size, kernels, strides)
    return [
        ("agent.model.filters", filters, all(f >= 1 for f in filters), "must all be >= 1"),
        ("agent.model.kernel_size", kernels, len(kernels) == len(filters),
         f"needs one entry per Conv2D layer (agent.model.filters has {len(filters)})"),
        ("agent.model.strides", strides, len(strides) == len(filters),
         f"needs one entry per Conv2D layer (agent.model.filters has {len(filters)})"),
        ("agent.model.kernel_size", kernels, all(k >= 1 for k in kernels), "must all be >= 1"),
        ("agent.model.strides", strides, all(s >= 1 for s in strides), "must all be >= 1"),
        ("agent.model.filters", filters, not filters or atari,
         "a Conv2D stack needs image frames: env.preprocessing=atari (or agent.model=mlp)"),
        ("agent.model.kernel_size", kernels, not (filters and atari) or side >= 1,
         f"leaves no pixels of env.atari.screen_size={cfg.env.atari.screen_size} frames"),
    ]


def conv_output_side(side: int, kernels: list[int], strides: list[int]) -> int:
    """The frame side after 'valid' Conv2D layers (84, [8,4,3], [4,2,1] -> 7)."""
    for kernel, stride in zip(kernels, strides, strict=False):
        side = (side - kernel) // max(stride, 1) + 1 if side >= kernel else 0
    return side


def env_checks(env: DictConfig) -> list[tuple[str, Any, bool, str]]:
    """``env.preprocessing`` and, for Atari, the ranges of ``env.atari``."""
    a = env.atari
    return [
        ("env.preprocessing", env.preprocessing, env.preprocessing in PREPROCESSING,
         f"must be one of {', '.join(PREPROCESSING)}"),
        ("env.atari.frame_skip", a.frame_skip, a.frame_skip >= 1, "must be >= 1"),
        ("env.atari.noop_max", a.noop_max, a.noop_max >= 0, "must be >= 0"),
        ("env.atari.screen_size", a.screen_size, a.screen_size >= 8, "must be >= 8"),
        ("env.atari.max_num_frames_per_episode", a.max_num_frames_per_episode,
         a.max_num_frames_per_episode >= 0, "must be >= 0 (0: no cap)"),
    ]


def min_warmup(cfg: DictConfig) -> int:
    """The smallest ``agent.nb_steps_warmup`` with enough transitions for the first batch.

    keras-rl2 (and the fast memory) train at step ``s`` when ``s > nb_steps_warmup`` and
    ``s % train_interval == 0``, after storing that step's transition; the memory holds
    ``s // memory_interval + 1`` of them and sampling asserts ``>= window_length + 2``.
    """
    a = cfg.agent
    needed_step = max(a.memory_interval, 1) * (a.memory.window_length + 1)
    interval = max(a.train_interval, 1)
    return max(0, (-(-needed_step // interval) - 1) * interval)


def check_env(env: DictConfig) -> None:
    """The env must be registered in gymnasium, have a discrete action space, and be an
    Atari (ALE) env exactly when ``env.preprocessing=atari``."""
    import gymnasium as gym

    from rltrain.envs import is_ale, register_ale

    env_id = env.id
    register_ale(env_id)
    if env_id not in gym.envs.registry:
        raise ConfigError(f"env.id={env_id}: not a registered gymnasium environment")
    ale = is_ale(env_id)
    if env.preprocessing == "atari" and not ale:
        raise ConfigError(f"env.id={env_id}: env.preprocessing=atari needs an Atari env "
                          "(ALE/<Game>-v5, e.g. ALE/Pong-v5)")
    if env.preprocessing == "none" and ale:
        raise ConfigError(f"env.id={env_id}: an Atari env needs env.preprocessing=atari "
                          f"(python -m sweep train env=atari env.id={env_id})")
    try:
        made = gym.make(env_id)
    except Exception as err:  # missing extras (box2d, atari ...) surface here
        raise ConfigError(f"env.id={env_id}: cannot be created ({err})") from err
    try:
        if not isinstance(made.action_space, gym.spaces.Discrete):
            raise ConfigError(f"env.id={env_id}: DQN needs a discrete action space, "
                              f"this one is {type(made.action_space).__name__}")
    finally:
        made.close()


def reward_threshold(env: DictConfig) -> float:
    """The solve threshold: ``env.reward_threshold``, else the env spec's, else NaN."""
    import gymnasium as gym

    from rltrain.envs import register_ale

    value = env.reward_threshold
    if value is None:
        register_ale(env.id)
        value = gym.spec(env.id).reward_threshold
    return math.nan if value is None else float(value)


def flatten(cfg: DictConfig) -> dict[str, Any]:
    """``{"agent.model.units": 16, ...}`` for MLflow params, with URLs' passwords masked."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            out[prefix[:-1]] = mask_url(node) if isinstance(node, str) else node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def to_yaml(cfg: DictConfig) -> str:
    """The composed config as YAML, with passwords masked."""
    return mask_url(OmegaConf.to_yaml(cfg, resolve=True))
