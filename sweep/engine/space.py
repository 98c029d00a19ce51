"""Hydra's sweep grammar -> Optuna distributions.

Every entry is parsed by Hydra's own override parser (never ``eval``'d)::

    choice(16,32,64)  or  16,32,64   CategoricalDistribution (numbers, strings, config groups)
    range(1,4)                       IntDistribution(1, 3): the end is excluded, as in Python
    range(0.1,0.5,0.1)               FloatDistribution(0.1, 0.4, step=0.1)
    interval(0.01,0.2)               FloatDistribution(0.01, 0.2); IntDistribution on an int key
    tag(log, interval(1e-4,1e-2))    the same on a log scale; tag(int, ...) forces integers
    key=value                        fixed for every trial: not searched
    ~key                             drops the dimension: trials use the config's own value

Entries from ``conf/search/<name>.yaml`` come first; command-line entries add, replace or
fix dimensions after them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    QuotedString,
    RangeSweep,
)
from hydra.errors import HydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from rltrain.config import ConfigError

TAGS = ("log", "int")
Kind = str  # "int", "float", "bool", "str", "group" (a config group: agent, train ...) or
# "any" (an env keyword the config does not set: a range of whole numbers is an int)


@dataclass(frozen=True)
class Dimension:
    """One searched key: the expression as written and its Optuna distribution."""

    key: str
    expression: str
    distribution: BaseDistribution


@dataclass
class SearchSpace:
    """The searched dimensions and the fixed overrides (``key -> "key=value"``), in order."""

    dimensions: dict[str, Dimension] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, str]:
        """``{"agent.lr": "tag(log, interval(1e-4, 1e-2))", ...}`` for logs and MLflow."""
        return {key: dim.expression for key, dim in self.dimensions.items()}


def parse(text: str) -> Override:
    """One override with Hydra's parser; ConfigError naming it if the grammar rejects it."""
    try:
        return OverridesParser.create().parse_override(text)
    except HydraException as err:
        lines = [line for line in str(err).splitlines() if line.strip()]
        why = lines[-1].strip() if lines else type(err).__name__
        raise ConfigError(f"{text}: {why}") from err


def build(entries: Mapping[str, Any], args: Sequence[str],
          kind_of_for: Callable[[list[str]], Callable[[str], Kind]]) -> SearchSpace:
    """The space from a search file's ``entries`` then command-line ``args`` (later wins).

    ``kind_of_for(fixed)`` returns ``kind_of(key)``: the key's type in the training config
    composed with the fixed overrides (ConfigError for unknown keys).
    """
    sweeps: dict[str, str] = {}
    fixed: dict[str, str] = {}
    texts = [f"{key}={_yaml_text(value)}" for key, value in entries.items()]
    for text in [*texts, *args]:
        _classify(text, sweeps, fixed)
    kind_of = kind_of_for(list(fixed.values()))
    space = SearchSpace(fixed=fixed)
    for key, text in sweeps.items():
        override = parse(text)
        space.dimensions[key] = Dimension(key, override.get_value_string().strip(),
                                          to_distribution(text, override.value(), kind_of(key)))
    return space


def _yaml_text(value: Any) -> str:
    """A search file's value as override text: sweep expressions are strings already."""
    return value if isinstance(value, str) else format_value(value)


def _classify(text: str, sweeps: dict[str, str], fixed: dict[str, str]) -> None:
    """A sweep adds or replaces a dimension, a plain value fixes the key, ``~key`` drops it."""
    override = parse(text)
    key = override.key_or_group
    if override.is_delete() and key in sweeps:
        del sweeps[key]
    elif override.is_sweep_override():
        sweeps[key] = text
        fixed.pop(key, None)
    else:
        sweeps.pop(key, None)
        fixed[key] = text


def to_distribution(text: str, sweep: Any, kind: Kind) -> BaseDistribution:
    """The Optuna distribution for one parsed sweep; ConfigError naming ``text`` if unusable."""
    tags = set(sweep.tags)
    if tags - set(TAGS):
        raise ConfigError(f"{text}: unknown tag {', '.join(sorted(tags - set(TAGS)))} "
                          f"(known: {', '.join(TAGS)})")
    try:
        if isinstance(sweep, ChoiceSweep):
            return _choice(text, sweep, kind)
        if kind not in ("int", "float", "any"):
            raise ConfigError(f"{text}: a {kind} key takes choice(...), not range or interval")
        if isinstance(sweep, RangeSweep):
            return _range(text, sweep, kind, tags)
        if isinstance(sweep, IntervalSweep):
            return _interval(text, sweep, kind, tags)
    except ValueError as err:  # Optuna's own checks: low <= high, log needs low > 0 ...
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{text}: {err}") from err
    raise ConfigError(f"{text}: unsupported sweep ({type(sweep).__name__})")


def _choice(text: str, sweep: ChoiceSweep, kind: Kind) -> CategoricalDistribution:
    if sweep.shuffle or sweep.tags:
        raise ConfigError(f"{text}: choice takes no tags and no shuffle")
    choices = []
    for item in sweep.list:
        value = item.text if isinstance(item, QuotedString) else item
        if isinstance(value, list | dict) or value is None:
            raise ConfigError(f"{text}: choices must be numbers, strings or booleans")
        if kind == "group" and not isinstance(value, str):
            raise ConfigError(f"{text}: a config group takes names, got {value!r}")
        choices.append(value)
    if len(set(map(repr, choices))) != len(choices):
        raise ConfigError(f"{text}: repeated choice")
    return CategoricalDistribution(choices)


def _range(text: str, sweep: RangeSweep, kind: Kind, tags: set[str]) -> BaseDistribution:
    start, stop, step = (Decimal(str(x)) for x in (sweep.start, sweep.stop, sweep.step))
    if step <= 0:
        raise ConfigError(f"{text}: the step must be > 0")
    count = math.ceil((stop - start) / step)
    if count < 1:
        raise ConfigError(f"{text}: empty range (the end is excluded, as in Python)")
    last = start + (count - 1) * step
    integral = all(x == x.to_integral_value() for x in (start, last, step))
    if kind == "int" or "int" in tags or (kind == "any" and integral):
        if not integral:
            raise ConfigError(f"{text}: an integer key takes integer bounds and step")
        return IntDistribution(int(start), int(last), step=int(step), log="log" in tags)
    if "log" in tags:
        raise ConfigError(f"{text}: tag(log, ...) works with interval or integer ranges")
    return FloatDistribution(float(start), float(last), step=float(step))


def _interval(text: str, sweep: IntervalSweep, kind: Kind, tags: set[str]) -> BaseDistribution:
    low, high = float(sweep.start), float(sweep.end)  # type: ignore[arg-type]
    if kind == "int" or "int" in tags:
        if not (low.is_integer() and high.is_integer()):
            raise ConfigError(f"{text}: an integer key takes integer bounds")
        return IntDistribution(int(low), int(high), log="log" in tags)
    return FloatDistribution(low, high, log="log" in tags)


def suggest(trial: Any, space: SearchSpace) -> dict[str, Any]:
    """Ask ``trial`` for a value of every dimension: ``{key: value}``."""
    values: dict[str, Any] = {}
    for key, dim in space.dimensions.items():
        d = dim.distribution
        if isinstance(d, CategoricalDistribution):
            values[key] = trial.suggest_categorical(key, d.choices)
        elif isinstance(d, IntDistribution):
            values[key] = trial.suggest_int(key, d.low, d.high, step=d.step, log=d.log)
        else:
            assert isinstance(d, FloatDistribution)
            values[key] = trial.suggest_float(key, d.low, d.high, step=d.step, log=d.log)
    return values


_PLAIN = re.compile(r"[A-Za-z_][\w./-]*")


def format_value(value: Any) -> str:
    """A Python value as Hydra override text that parses back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and parse(f"k={text}").value() == text:
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def overrides(values: Mapping[str, Any]) -> list[str]:
    """``{"agent.lr": 0.001}`` -> ``["agent.lr=0.001"]``."""
    return [f"{key}={format_value(value)}" for key, value in values.items()]
