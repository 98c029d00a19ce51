"""The sweep's settings (``conf/multirun.yaml``): schema, composition and validation.

``plan(args)`` turns a ``multirun`` command line into a checked :class:`Plan`. It imports
neither TensorFlow nor MLflow and creates no files, so bad input costs a second, not a study.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from optuna.distributions import BaseDistribution, CategoricalDistribution

from rltrain.config import (
    DEFAULT_CONF_DIR,
    ConfigError,
    compose,
    compose_config,
    find_option,
    group_choice,
    group_names,
    is_free_form,
    user_conf_dir,
    validate,
)
from rltrain.secrets import mask_login
from rltrain.urls import STORAGE_SCHEMES, TRACKING_SCHEMES, check_url
from sweep.engine import enqueue, objective, seeds
from sweep.engine import space as space_

SAMPLERS = {"tpe": None, "random": None, "cmaes": "cmaes", "gp": "torch"}  # name -> needs
PRUNERS = ("median", "hyperband", "threshold", "wilcoxon", "none")
METRICS = ("eval/mean_reward", "test/mean_reward")
DIRECTIONS = ("maximize", "minimize")
SETTINGS_GROUPS = ("sweep", "search")  # the multirun config's own groups, not the trial's
DEFAULT_SEARCH = "default"  # search=default: the env group's own space, conf/search/<env>.yaml
STUDY_PREFIX = "dqn-"  # an empty sweep.study_name: dqn-<env group>
THREADS_FIXED = ("train.threads cannot differ between trials (TensorFlow sets its thread "
                 "pools once per worker process); fix it: train.threads=N")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_ABSENT = object()


@dataclass
class SweepSettings:
    """``sweep.*``: the Optuna study and how it runs (see conf/sweep/default.yaml)."""

    study_name: str = ""  # empty: dqn-<env group>
    storage: str = ""
    dir: str = "multirun"
    n_trials: int = 16
    n_jobs: int = 2
    sampler: str = "tpe"
    sampler_startup_trials: int = 8
    pruner: str = "median"
    prune_startup_trials: int = 4
    prune_warmup_steps: int = 10000
    prune_threshold: float = math.nan
    seed: int = 0
    direction: str = "maximize"
    metric: str = "eval/mean_reward"
    max_failures: int = 5
    heartbeat_interval: int = 10
    grace_period: int = 60
    max_retry: int = 2
    seeds_per_trial: int = 2
    seed_score: str = "mean"
    score_last_n: int = 3
    aggregate: str = "mean"
    recheck_top_k: int = 3
    recheck_seeds: int = 4
    register_best: bool = True
    timeout: float = 0.0  # seconds; 0: no limit
    stop_at: float = math.nan  # NaN: no target
    warm_start: bool = True
    enqueue: str = ""


@dataclass
class MultirunConfig:
    sweep: SweepSettings = field(default_factory=SweepSettings)
    search: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(name="multirun_schema", node=MultirunConfig)


@dataclass
class Plan:
    """Everything a sweep needs, checked: settings, space, and what every trial shares."""

    settings: SweepSettings
    space: space_.SearchSpace
    search_name: str
    folder: Path           # <sweep.dir>/<study_name>: journal, trial folders, summary
    storage: str           # an Optuna storage URL, or a journal file path
    tracking_uri: str
    experiment: str
    eval_interval: int
    nb_steps: int
    args: list[str] = field(default_factory=list)
    env: str = ""          # the env group every trial trains on (env=acrobot: acrobot)
    warm: dict[str, Any] = field(default_factory=dict)   # the config's defaults inside the space
    queue: list[dict[str, Any]] = field(default_factory=list)  # sweep.enqueue's entries

    @property
    def fixed(self) -> list[str]:
        """Overrides every trial gets (search-file constants, then the command line's)."""
        return list(self.space.fixed.values())

    @property
    def seed_fixed(self) -> bool:
        return "seed" in self.space.fixed


def split(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """``sweep.*`` and ``search=NAME`` go to the multirun config; the rest to the trials."""
    own, trial = [], []
    for arg in args:
        key = arg.lstrip("+~").split("=", 1)[0]
        (own if key.split(".", 1)[0] in SETTINGS_GROUPS else trial).append(arg)
    return own, trial


def plan(args: Sequence[str], conf_dir: Path | None = None) -> Plan:
    """Compose and check a ``multirun`` command line; ConfigError (one line) if anything is off.

    No ``search=`` (or ``search=default``): the chosen env group's own space,
    ``conf/search/<env>.yaml``. An empty ``sweep.study_name``: ``dqn-<env group>``.
    """
    own, trial_args = split(args)
    conf = conf_dir or DEFAULT_CONF_DIR
    search_name = _search_name(own, trial_args, conf)
    own = [a for a in own if not a.lstrip("+").startswith("search=")] + [f"search={search_name}"]
    cfg = compose_config(own, conf_dir, config_name="multirun", schema=MultirunConfig)
    entries = OmegaConf.to_container(cfg.search, resolve=True)
    assert isinstance(entries, dict)
    preset = {str(k): v for k, v in entries.items() if str(k).startswith("sweep.")}
    settings = _settings(cfg.sweep, preset, own, search_name)
    groups = _config_groups(conf)
    bases: dict[tuple[str, ...], DictConfig] = {}

    def kind_of_for(fixed: list[str]):
        base = bases.setdefault(tuple(fixed), compose_config(fixed, conf_dir))
        return lambda key: key_kind(base, groups, key)

    trial_entries = {k: v for k, v in entries.items() if k not in preset}
    space = space_.build(trial_entries, trial_args, kind_of_for)  # type: ignore[arg-type]
    env = env_group(list(space.fixed.values()), conf)
    if env == env_group([], conf):  # env=cartpole is the default: the same study as without
        space.fixed.pop("env", None)
    if not settings.study_name:
        settings.study_name = f"{STUDY_PREFIX}{env}"
    check_settings(settings)
    check_seed(space)
    base = bases.setdefault(tuple(space.fixed.values()),
                            compose_config(list(space.fixed.values()), conf_dir))
    validate(base)
    check_url("tracking.uri", base.tracking.uri, TRACKING_SCHEMES)  # also one from a YAML file
    check_values(base, space, groups, conf_dir)
    check_fit(settings, base, space)
    check_sampler(settings, space)
    queue = enqueue.load(settings.enqueue, space)
    warm = enqueue.defaults(base, space, group_choices(list(space.fixed.values()), conf), groups) \
        if settings.warm_start else {}
    folder = Path(settings.dir) / settings.study_name
    return Plan(settings=settings, space=space, search_name=search_name,
                folder=folder, storage=resolve_storage(settings.storage, folder),
                tracking_uri=base.tracking.uri, experiment=base.tracking.experiment,
                eval_interval=base.train.eval_interval, nb_steps=base.train.nb_steps,
                args=list(args), env=env, warm=warm, queue=queue)


def _settings(sweep: DictConfig, preset: dict[str, Any], own: Sequence[str],
              search_name: str) -> SweepSettings:
    """``sweep.*`` of the multirun config, with the search space's own ``sweep.*`` entries
    (``preset``: the settings it was built for) where the command line does not give the key."""
    given = {a.lstrip("+~").split("=", 1)[0] for a in own}
    for key, value in preset.items():
        if key in given:
            continue
        try:
            entry = {key.removeprefix("sweep."): value}
            sweep = OmegaConf.merge(sweep, entry)  # type: ignore[assignment]
        except OmegaConfBaseException as err:
            why = str(err).strip().splitlines()[0]
            raise ConfigError(f"{key}={value} (search={search_name}): {why}") from err
    return OmegaConf.to_object(sweep)  # type: ignore[return-value]


def study_keys(args: Sequence[str]) -> list[str]:
    """What names a study on a multirun line: ``sweep.*``, ``search=`` and ``env=``."""
    keys = [a.lstrip("+~").split("=", 1)[0] for a in args]
    return [a for a, key in zip(args, keys, strict=True)
            if key.startswith("sweep.") or key in ("search", "env")]


def env_group(overrides: Sequence[str], conf_dir: Path) -> str:
    """The env group a training config composed with these overrides uses: ``env=NAME``, an
    experiment's ``override /env: NAME``, else conf/config.yaml's default."""
    return group_choices(overrides, conf_dir).get("env", "")


def group_choices(overrides: Sequence[str], conf_dir: Path) -> dict[str, str]:
    """The config group options a training config composed with these overrides uses
    (``{"env": "cartpole", "agent": "dqn", "agent/model": "mlp", ...}``)."""
    choices = tuple(o for o in overrides if "." not in o.split("=", 1)[0]
                    and not o.startswith("~") and not space_.parse(o).is_sweep_override())
    return dict(_choices(choices, conf_dir.resolve(), user_conf_dir()))


@functools.lru_cache(maxsize=64)
def _choices(choices: tuple[str, ...], conf_dir: Path,
             user: Path | None) -> tuple[tuple[str, str], ...]:
    try:
        cfg = compose([group_choice(c, conf_dir) for c in choices], conf_dir, hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(str(err).strip().splitlines()[0]) from err
    return tuple((str(k), str(v)) for k, v in cfg.hydra.runtime.choices.items() if v)


def _search_name(own: Sequence[str], trial_args: Sequence[str], conf_dir: Path) -> str:
    """``search=NAME`` as given, else (or ``default``) the env group's ``conf/search/<env>``."""
    names = [a.split("=", 1)[1] for a in own if a.lstrip("+").startswith("search=")]
    if names and names[-1] != DEFAULT_SEARCH:
        return names[-1]
    env = env_group(trial_args, conf_dir)
    if find_option(f"search/{env}.yaml", conf_dir) is None:
        raise ConfigError(f"search={DEFAULT_SEARCH}: env={env} has no default search space "
                          f"(conf/search/{env}.yaml); give one with search=NAME "
                          "(python -m sweep multirun --info searches)")
    return env


def _config_groups(conf_dir: Path) -> set[str]:
    return group_names(conf_dir) - set(SETTINGS_GROUPS)


def check_settings(s: SweepSettings) -> None:
    """Ranges and names of ``sweep.*``; ConfigError naming the first bad key."""
    checks: list[tuple[str, Any, bool, str]] = [
        ("study_name", s.study_name, bool(_NAME.fullmatch(s.study_name)),
         "letters, digits, '.', '_' and '-' only (it names a folder)"),
        ("dir", s.dir, bool(s.dir.strip()), "must not be empty"),
        ("n_trials", s.n_trials, s.n_trials >= 1, "must be >= 1"),
        ("n_jobs", s.n_jobs, s.n_jobs >= 1, "must be >= 1"),
        ("sampler", s.sampler, s.sampler in SAMPLERS, f"must be one of {', '.join(SAMPLERS)}"),
        ("sampler_startup_trials", s.sampler_startup_trials, s.sampler_startup_trials >= 0,
         "must be >= 0"),
        ("pruner", s.pruner, s.pruner in PRUNERS, f"must be one of {', '.join(PRUNERS)}"),
        ("prune_startup_trials", s.prune_startup_trials, s.prune_startup_trials >= 0,
         "must be >= 0"),
        ("prune_warmup_steps", s.prune_warmup_steps, s.prune_warmup_steps >= 0, "must be >= 0"),
        ("prune_threshold", s.prune_threshold,
         s.pruner != "threshold" or math.isfinite(s.prune_threshold),
         "sweep.pruner=threshold needs a number: trials below it (above, when minimizing) "
         "are pruned"),
        ("seed", s.seed, 0 <= s.seed < seeds.MAX_SWEEP_SEED,
         f"must be in [0, {seeds.MAX_SWEEP_SEED})"),
        ("n_trials", s.n_trials, s.n_trials <= seeds.MAX_TRIALS,
         f"must be <= {seeds.MAX_TRIALS}"),
        ("seeds_per_trial", s.seeds_per_trial,
         1 <= s.seeds_per_trial <= seeds.MAX_SEEDS_PER_TRIAL,
         f"must be in [1, {seeds.MAX_SEEDS_PER_TRIAL}]"),
        ("seed_score", s.seed_score, s.seed_score in objective.SEED_SCORES,
         f"must be one of {', '.join(objective.SEED_SCORES)}"),
        ("score_last_n", s.score_last_n, s.score_last_n >= 1, "must be >= 1"),
        ("aggregate", s.aggregate, s.aggregate in objective.AGGREGATES,
         f"must be one of {', '.join(objective.AGGREGATES)}"),
        ("recheck_top_k", s.recheck_top_k, s.recheck_top_k >= 0, "must be >= 0 (0: no recheck)"),
        ("recheck_seeds", s.recheck_seeds, 1 <= s.recheck_seeds <= seeds.MAX_RECHECK_SEEDS,
         f"must be in [1, {seeds.MAX_RECHECK_SEEDS}]"),
        ("pruner", s.pruner, s.pruner != "wilcoxon" or s.seeds_per_trial >= 2,
         "wilcoxon compares seeds: needs sweep.seeds_per_trial >= 2"),
        ("direction", s.direction, s.direction in DIRECTIONS, "must be maximize or minimize"),
        ("metric", s.metric, s.metric in METRICS, f"must be one of {', '.join(METRICS)}"),
        ("max_failures", s.max_failures, s.max_failures >= 0, "must be >= 0"),
        ("heartbeat_interval", s.heartbeat_interval, s.heartbeat_interval >= 1,
         "must be >= 1 (seconds)"),
        ("grace_period", s.grace_period, s.grace_period > s.heartbeat_interval,
         f"must be > sweep.heartbeat_interval ({s.heartbeat_interval}), else live trials "
         "look dead"),
        ("max_retry", s.max_retry, s.max_retry >= 0, "must be >= 0"),
        ("timeout", s.timeout, s.timeout >= 0, "must be >= 0 (seconds; 0: no limit)"),
    ]
    for key, value, ok, why in checks:
        if not ok:
            raise ConfigError(f"sweep.{key}={value}: {why}")
    needs = SAMPLERS[s.sampler]
    if needs and importlib.util.find_spec(needs) is None:
        raise ConfigError(f"sweep.sampler={s.sampler}: needs the '{needs}' package, which is "
                          f"not installed (pip install -e .[samplers], as requirements.lock does)")


def check_seed(space: space_.SearchSpace) -> None:
    """``seed`` is not a hyperparameter: trial seeds derive from ``sweep.seed``."""
    if "seed" in space.dimensions:
        raise ConfigError(f"seed={space.dimensions['seed'].expression}: seed cannot be searched; "
                          "use sweep.seed=N (derives a seed per trial) or a fixed seed=N")


def check_sampler(s: SweepSettings, space: space_.SearchSpace) -> None:
    """CMA-ES samples numbers only: Optuna would sample a choice(...) dimension at random
    (its independent sampler) and CMA-ES would search only the rest; refused instead."""
    if s.sampler != "cmaes":
        return
    for key, dim in space.dimensions.items():
        if isinstance(dim.distribution, CategoricalDistribution):
            raise ConfigError(f"sweep.sampler=cmaes: {key}={dim.expression}: CMA-ES takes no "
                              "choice(...) dimension (Optuna would sample it at random); "
                              f"write it as range(...) or interval(...), fix it ({key}=VALUE), "
                              "or use sweep.sampler=tpe or gp")


def check_fit(s: SweepSettings, base: DictConfig, space: space_.SearchSpace) -> None:
    """Settings that only work with some training configs."""
    searched = space.dimensions
    if "train.eval_interval" not in searched and base.train.eval_interval < 1:
        if s.metric == "eval/mean_reward":
            raise ConfigError("train.eval_interval=0: sweep.metric=eval/mean_reward needs "
                              "evaluations (train.eval_interval >= 1)")
        if s.pruner != "none":
            raise ConfigError(f"train.eval_interval=0: sweep.pruner={s.pruner} needs periodic "
                              "evaluations (train.eval_interval >= 1) or sweep.pruner=none")
    if s.metric == "test/mean_reward" and "train.test_episodes" not in searched \
            and base.train.test_episodes < 1:
        raise ConfigError("train.test_episodes=0: sweep.metric=test/mean_reward needs a final "
                          "test (train.test_episodes >= 1)")


def key_kind(cfg: DictConfig, groups: set[str], key: str) -> space_.Kind:
    """The type of a searched key: int, float, bool, str, or group (a config group)."""
    if key in groups:
        return "group"
    value = OmegaConf.select(cfg, key, default=_ABSENT)
    if value is _ABSENT and is_free_form(key):
        return "any"  # a keyword of the env's: its type is the sweep's values'
    if value is _ABSENT:
        raise ConfigError(f"{key}: not a key of the training config (conf/config.yaml)")
    if isinstance(value, DictConfig):
        raise ConfigError(f"{key}: is a section of the config; search its keys "
                          f"({key}.<name>=...)")
    for kind in (bool, int, float, str):  # bool before int: True is an int too
        if isinstance(value, kind):
            return kind.__name__
    raise ConfigError(f"{key}: cannot be searched (a {type(value).__name__})")


def representative(distribution: BaseDistribution) -> list[Any]:
    """The values worth checking before any trial: every choice, or both bounds."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    return [distribution.low, distribution.high]  # type: ignore[attr-defined]


def check_values(base: DictConfig, space: space_.SearchSpace, groups: set[str],
                 conf_dir: Path | None) -> None:
    """Each dimension's choices or bounds, one at a time on the base config, must validate.

    Only combinations of sampled values can still be bad; such a trial ends FAILED. No
    dimension may change ``train.threads``: a worker's TensorFlow keeps its first trial's.
    """
    for key, dim in space.dimensions.items():
        for value in representative(dim.distribution):
            where = f"{key}={dim.expression}"
            try:
                if key in groups or is_free_form(key):
                    cfg = compose_config([*space.fixed.values(), f"{key}={value}"], conf_dir)
                else:
                    cfg = copy.deepcopy(base)
                    OmegaConf.update(cfg, key, value, merge=False)
                validate(cfg)
                if cfg.train.threads != base.train.threads:
                    raise ConfigError(THREADS_FIXED)
            except ConfigError as err:
                raise ConfigError(f"{where}: {err}") from err
            except OmegaConfBaseException as err:
                why = str(getattr(err, "msg", err)).splitlines()[0]
                raise ConfigError(f"{where}: {key}={value}: {why}") from err


def resolve_storage(storage: str, folder: Path) -> str:
    """Empty: a journal file in the study's folder; a URL; or a journal file path."""
    if not storage:
        return str(folder / "study.log")
    check_url("sweep.storage", storage, STORAGE_SCHEMES)
    if "://" in storage or storage.endswith((".log", ".journal")):
        return storage
    raise ConfigError(f"sweep.storage={mask_login(storage)}: give an Optuna storage URL "
                      "(sqlite:///x.db, postgresql://...) or a journal file path ending in .log")
