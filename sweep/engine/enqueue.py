"""Configs a study tries first: the config's own defaults (warm start) and ``sweep.enqueue``.

``sweep.warm_start=true`` (the default): a new study's first trial is the base config's value
of every searched key whose value lies inside the space; the sampler draws the other keys.
``sweep.enqueue=FILE``: a YAML list of override mappings, tried next, in order::

    - {agent.lr: 0.0023, agent.batch_size: 64}   # RL Zoo's tuned CartPole values
    - {agent.model.units: 32}

Both go through Optuna's ``study.enqueue_trial`` (``skip_if_exists``): a resumed study
queues only entries it has not seen. Checked before anything runs: a key that is not
searched, or a value outside the space, is a ConfigError naming the file, entry and key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from rltrain.config import ConfigError
from sweep.engine.space import SearchSpace

WARM = "warm start"  # the ``enqueued`` user attr of the warm-start trial
_OUTSIDE = object()


def inside(distribution: BaseDistribution, value: Any) -> Any:
    """``value`` as the distribution holds it (a choice itself, a float for a float
    dimension), or ``_OUTSIDE`` when it is not one of its values."""
    if isinstance(distribution, CategoricalDistribution):
        same = [c for c in distribution.choices
                if c == value and isinstance(c, bool) == isinstance(value, bool)
                and isinstance(c, str) == isinstance(value, str)]
        return same[0] if same else _OUTSIDE
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return _OUTSIDE
    if isinstance(distribution, IntDistribution):
        ok = isinstance(value, int) and distribution.low <= value <= distribution.high \
            and (value - distribution.low) % distribution.step == 0
        return value if ok else _OUTSIDE
    assert isinstance(distribution, FloatDistribution)
    low, high, step = distribution.low, distribution.high, distribution.step
    if not low <= value <= high:
        return _OUTSIDE
    if step is not None and abs((value - low) / step - round((value - low) / step)) > 1e-8:
        return _OUTSIDE
    return float(value)


def defaults(base: DictConfig, space: SearchSpace, choices: Mapping[str, str],
             groups: set[str]) -> dict[str, Any]:
    """The base config's value of each searched key, where it lies inside the space
    (a config group: its chosen option); the other keys are left to the sampler."""
    warm: dict[str, Any] = {}
    for key, dim in space.dimensions.items():
        value = choices.get(key, _OUTSIDE) if key in groups \
            else OmegaConf.select(base, key, default=_OUTSIDE)
        if value is _OUTSIDE:
            continue
        value = inside(dim.distribution, value)
        if value is not _OUTSIDE:
            warm[key] = value
    return warm


def load(path: str, space: SearchSpace) -> list[dict[str, Any]]:
    """The entries of a ``sweep.enqueue`` file, each checked against the space."""
    if not path:
        return []
    where = f"sweep.enqueue={path}"
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{where}: no such file")
    try:
        entries = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{where}: not YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: a YAML list of mappings expected, e.g. "
                          "- {agent.lr: 0.001, agent.batch_size: 64}")
    return [_entry(f"{where}: entry {i}", entry, space) for i, entry in enumerate(entries, 1)]


def _entry(where: str, entry: Any, space: SearchSpace) -> dict[str, Any]:
    if not isinstance(entry, dict) or not entry:
        raise ConfigError(f"{where}: a mapping of searched keys to values expected, "
                          f"got {entry!r}")
    checked: dict[str, Any] = {}
    for key, value in entry.items():
        dim = space.dimensions.get(str(key))
        if dim is None:
            why = f"fixed for every trial ({space.fixed[key]})" if key in space.fixed \
                else "not a key of the search space"
            raise ConfigError(f"{where}: {key}: {why}; searched: "
                              f"{', '.join(space.dimensions) or '(nothing)'}")
        checked[dim.key] = inside(dim.distribution, value)
        if checked[dim.key] is _OUTSIDE:
            raise ConfigError(f"{where}: {key}={value}: outside the search space "
                              f"{key}={dim.expression}")
    return checked


def queue_first(study: Any, warm: dict[str, Any], queue: list[dict[str, Any]],
                path: str) -> int:
    """Enqueue the warm start (a study with no trial yet) and the file's entries that the
    study has not seen; returns how many were queued. Call it under the claim lock."""
    before = len(study.trials)
    if warm and not study.trials:
        study.enqueue_trial(warm, user_attrs={"enqueued": WARM}, skip_if_exists=True)
    for i, params in enumerate(queue, 1):
        study.enqueue_trial(params, user_attrs={"enqueued": f"{path} entry {i}"},
                            skip_if_exists=True)
    return len(study.trials) - before
