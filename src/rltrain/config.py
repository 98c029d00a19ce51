"""The typed config schema, its composition by Hydra, and its validation.

Nothing here imports TensorFlow: bad input is caught before the slow import.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rltrain.secrets import mask_url

CONFIG_DIR_VAR = "SWEEP_CONFIG_DIR"  # --config-dir DIR: a user's folder, searched first
FREE_FORM = ("env.kwargs",)  # mappings whose keys the schema does not know (any keyword)
SAMPLING = ("fast", "keras-rl")  # agent.memory.sampling (rltrain.fast.Streams)
# Keys of the machine running a command, never taken from the recorded run it retrains
# (the saved tracking URI is masked); GIVEN_KEYS: from the command line only when given.
MACHINE_KEYS = ("tracking.uri", "tracking.experiment", "train.progress")
GIVEN_KEYS = ("train.threads",)


def shipped_conf_dir() -> Path:
    """The shipped ``conf/``: at the top of a checkout, else installed as package data
    (``rltrain/conf``)."""
    checkout = Path(__file__).resolve().parents[2] / "conf"
    return checkout if (checkout / "config.yaml").is_file() else Path(__file__).parent / "conf"


DEFAULT_CONF_DIR = shipped_conf_dir()
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
    imports: list[str] = field(default_factory=list)   # modules imported before the env is made
    kwargs: dict[str, Any] = field(default_factory=dict)  # gymnasium.make(id, **kwargs)
    wrappers: list[Any] = field(default_factory=list)  # [{_target_: WRAPPER, **arguments}, ...]
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
    sampling: str = "fast"  # fast: vectorised draws; keras-rl: keras-rl2's exact random calls


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
    gradient_steps: int = 1
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
    eval_side_by_side: bool = True
    threads: int = 1
    progress: bool = True


@dataclass
class TrackingConfig:
    uri: str = ""
    experiment: str = "keras-rl-cartpole"
    run_name: str = ""
    log_models: bool = True


@dataclass
class Config:
    seed: int = 0
    output_dir: str = ""
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


ConfigStore.instance().store(name="base_config", node=Config)


def user_conf_dir() -> Path | None:
    """The folder given with ``--config-dir`` (carried in ``SWEEP_CONFIG_DIR``, so that
    spawned workers see it too), or None."""
    given = os.environ.get(CONFIG_DIR_VAR, "")
    return Path(given) if given else None


def use_config_dir(path: str) -> Path:
    """``--config-dir PATH``: searched before the shipped conf/ by this process and every
    process it starts; ConfigError if it is no folder."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise ConfigError(f"--config-dir {path}: no such folder")
    os.environ[CONFIG_DIR_VAR] = str(folder)
    return folder


def conf_dirs(config_dir: Path | None = None) -> list[Path]:
    """Where config groups are found, first match wins: the user's folder, then conf/."""
    user = user_conf_dir()
    return [*([user] if user else []), (config_dir or DEFAULT_CONF_DIR).resolve()]


def find_option(relative: str, config_dir: Path | None = None) -> Path | None:
    """The first ``DIR/relative`` (e.g. ``search/acrobot.yaml``) of ``conf_dirs``, or None."""
    return next((d / relative for d in conf_dirs(config_dir) if (d / relative).is_file()),
                None)


def group_names(config_dir: Path | None = None) -> set[str]:
    """The config groups (folders: env, search, agent ...) over every folder of conf_dirs."""
    return {p.name for d in conf_dirs(config_dir) for p in d.iterdir() if p.is_dir()}


def group_options(group: str, config_dir: Path | None = None) -> list[str]:
    """The options of a config group (``env``: cartpole, acrobot, ...) over every folder."""
    return sorted({p.stem for d in conf_dirs(config_dir) for p in (d / group).glob("*.yaml")})


def compose(overrides: list[str], config_dir: Path | None = None,
            config_name: str = "config", hydra_config: bool = False) -> DictConfig:
    """Hydra's compose over ``conf_dirs``: with a user folder, it is the primary folder and
    the shipped one is on its search path (the shipped primary config is found through
    Hydra's config store unless the user's folder has its own)."""
    from hydra import compose as hydra_compose

    dirs = conf_dirs(config_dir)
    if len(dirs) > 1:
        primary = _store_shipped(dirs[-1] / f"{config_name}.yaml")
        name = config_name if (dirs[0] / f"{config_name}.yaml").is_file() else primary
        overrides = [*overrides, f"hydra.searchpath=[{dirs[-1].as_uri()}]"]
    else:
        name = config_name
    with initialize_config_dir(version_base="1.3", config_dir=str(dirs[0]), job_name="sweep"):
        return hydra_compose(config_name=name, overrides=overrides,
                             return_hydra_config=hydra_config)


@functools.lru_cache(maxsize=8)
def _store_shipped(path: Path) -> str:
    """Put a shipped primary config (``conf/config.yaml``) in Hydra's config store, once per
    process; its name there."""
    name = f"shipped_{path.stem}_{abs(hash(path)):x}"  # one name per folder (tests copy conf/)
    ConfigStore.instance().store(name=name, node=OmegaConf.to_container(OmegaConf.load(path)))
    return name


def compose_config(overrides: list[str] | tuple[str, ...] = (), config_dir: Path | None = None,
                   config_name: str = "config", schema: type | None = None) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with command-line style overrides; raise ConfigError.

    Keys the typed ``schema`` (``Config`` for ``config``) does not have are refused however
    they were added (``+key=...``, ``++key=...``, an experiment file).
    """
    overrides = [free_form(group_choice(o, config_dir)) for o in overrides]
    try:
        cfg = compose(overrides, config_dir, config_name)
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


def is_free_form(key: str) -> bool:
    """A key inside a mapping of free keys (``env.kwargs.obs_type``), or the mapping itself."""
    return any(key == f or key.startswith(f"{f}.") for f in FREE_FORM)


def free_form(override: str) -> str:
    """``env.kwargs.X=V`` -> ``++env.kwargs.X=V``: a keyword the env takes needs no '+'."""
    key = override.split("=", 1)[0]
    return f"++{key.lstrip('+')}{override[len(key):]}" if is_free_form(key.lstrip("+")) \
        and "=" in override else override


def group_choice(override: str, config_dir: Path | None = None) -> str:
    """``agent.model=conv`` -> ``agent/model=conv`` (Hydra's spelling of a nested group
    choice) when ``conf/agent/model/conv.yaml`` exists; any other override as it is.
    A plain name that is no option of its group (``env=pong``) is a ConfigError listing them."""
    key, sep, value = override.partition("=")
    if not sep or key.startswith(("+", "~")):
        return override
    group = "/".join(key.replace("/", ".").split("."))
    if not any((d / group).is_dir() for d in conf_dirs(config_dir)):
        return override
    if find_option(f"{group}/{value}.yaml", config_dir):
        return f"{group}={value}"
    if re.fullmatch(r"[\w.-]+", value):
        options = ", ".join(group_options(group, config_dir))
        user = user_conf_dir()
        where = f"no {group}/{value}.yaml in {user} or conf/" if user \
            else f"conf/{group}/{value}.yaml"
        raise ConfigError(f"{key}={value}: no such option ({where}); choose one of {options}")
    return override


def load_saved(path: Path) -> DictConfig:
    """A run's saved ``config.yaml`` on today's schema: a key added since gets its default,
    a wrong type or unknown key fails. A run saved before ``agent.memory.sampling`` existed
    drew keras-rl2's exact stream, and keeps it."""
    saved = OmegaConf.load(path)
    if OmegaConf.select(saved, "agent.memory") is not None \
            and OmegaConf.select(saved, "agent.memory.sampling") is None:
        OmegaConf.update(saved, "agent.memory.sampling", "keras-rl")
    return OmegaConf.merge(OmegaConf.structured(Config), saved)  # type: ignore[return-value]


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
        ("agent.memory.sampling", a.memory.sampling, a.memory.sampling in SAMPLING,
         "must be fast (vectorised draws) or keras-rl (keras-rl2's exact random calls)"),
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
        ("agent.gradient_steps", a.gradient_steps, a.gradient_steps >= 1, "must be >= 1"),
        ("agent.gradient_steps", a.gradient_steps, a.impl == "fast" or a.gradient_steps == 1,
         "needs agent.impl=fast (keras-rl2's DQNAgent takes one gradient step per train call)"),
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
    """The env must be made as configured (its modules, id, kwargs and wrappers), and the
    agent must be able to take it: a discrete action space and, after the wrappers, a
    vector (Box) observation, or Atari frames exactly when ``env.preprocessing=atari``."""
    import gymnasium as gym

    from rltrain import envs

    modules = envs.env_modules(env)
    for module in modules:
        key = "env.imports" if module in env.imports else f"env.id={env.id}"
        try:
            envs.import_modules([module])
        except Exception as err:  # ImportError, or whatever the module raised on import
            raise ConfigError(f"{key}: module {module} does not import "
                              f"({type(err).__name__}: {_first_line(err)})") from err
    plain = envs.split_id(env.id)[1]
    envs.register_ale(plain)
    if plain not in gym.envs.registry:
        after = f" (after importing {', '.join(modules)})" if modules else \
            " (an env of a package: env.id=PACKAGE:NAME, or env.imports=[PACKAGE])"
        raise ConfigError(f"env.id={env.id}: not a registered gymnasium environment{after}")
    ale = envs.spec(env).entry_point == envs.ALE_ENTRY_POINT
    if env.preprocessing == "atari" and not ale:
        raise ConfigError(f"env.id={env.id}: env.preprocessing=atari needs an Atari env "
                          "(ALE/<Game>-v5, e.g. ALE/Pong-v5)")
    if env.preprocessing == "none" and ale:
        raise ConfigError(f"env.id={env.id}: an Atari env needs env.preprocessing=atari "
                          f"(python -m sweep train env=atari env.id={env.id})")
    made = make_checked(env)
    try:
        check_spaces(env, made)
    finally:
        made.close()


def make_checked(env: DictConfig) -> Any:
    """The env as ``make_env`` makes it, each failure one line naming ``env.kwargs.KEY``
    or ``env.wrappers[i]``."""
    from rltrain import envs

    check_wrapper_specs(env.wrappers)
    try:
        made = envs.make_env(env, 0, wrappers=False)
    except TypeError as err:  # a keyword the env's constructor does not take
        bad = re.search(r"keyword argument '(\w+)'", str(err))
        key = f"env.kwargs.{bad.group(1)}" if bad else "env.kwargs"
        why = _first_line(err).split(" was raised from the environment creator")[0]
        raise ConfigError(f"{key}: not accepted by {env.id} ({why})") from err
    except Exception as err:  # missing extras (box2d, atari ...) and bad values surface here
        raise ConfigError(f"env.id={env.id}: cannot be created ({_first_line(err)})") from err
    for i, wrapper in enumerate(env.wrappers):
        try:
            made = envs.wrap(made, [wrapper])
        except Exception as err:
            made.close()
            why = re.sub(r",? set env var HYDRA_FULL_ERROR.*|\s*full_key: \S+", "",
                         " ".join(str(err).split()))
            raise ConfigError(f"env.wrappers[{i}]={wrapper['_target_']}: {mask_url(why)}") from err
    return made


def check_wrapper_specs(wrappers: Any) -> None:
    """Each wrapper is a mapping with a ``_target_`` string (Hydra's instantiate form)."""
    for i, wrapper in enumerate(wrappers):
        target = wrapper.get("_target_") if OmegaConf.is_dict(wrapper) else None
        if not isinstance(target, str) or not target:
            raise ConfigError(f"env.wrappers[{i}]={wrapper}: give {{_target_: CLASS, "
                              "argument: value}, e.g. {_target_: gymnasium.wrappers."
                              "TimeLimit, max_episode_steps: 1000}")


def check_spaces(env: DictConfig, made: Any) -> None:
    """A discrete action space; an observation the agent takes (after the wrappers)."""
    import gymnasium as gym

    after = " after env.wrappers" if env.wrappers else ""
    if not isinstance(made.action_space, gym.spaces.Discrete):
        raise ConfigError(f"env.id={env.id}: DQN needs a discrete action space, "
                          f"this one is {type(made.action_space).__name__}{after}")
    obs = made.observation_space
    flatten = "add the wrapper {_target_: gymnasium.wrappers.FlattenObservation}"
    if not isinstance(obs, gym.spaces.Box):
        raise ConfigError(f"env.id={env.id}: the observation space{after} is "
                          f"{_space_text(obs)}; the agent takes a Box: {flatten}")
    image = obs.dtype == np.uint8 and len(obs.shape) == 3
    if image and env.preprocessing != "atari":
        raise ConfigError(f"env.id={env.id}: the observation space{after} is an image "
                          f"{obs.shape}; the mlp takes vectors: {flatten} (after "
                          "gymnasium.wrappers.ResizeObservation / GrayscaleObservation)")


def _space_text(space: Any) -> str:
    text = " ".join(str(space).split())
    return text if len(text) <= 120 else text[:117] + "..."


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return mask_url(lines[0]) if lines else type(err).__name__


def reward_threshold(env: DictConfig) -> float:
    """The solve threshold: ``env.reward_threshold``, else the env spec's, else NaN."""
    from rltrain.envs import spec

    value = env.reward_threshold
    if value is None:
        value = spec(env).reward_threshold
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
