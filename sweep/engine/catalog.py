"""The studies of a storage, one row each: what ``python -m sweep studies`` lists and
``sweep.api.studies()`` returns.

Which storage, as multirun finds it: ``sweep.storage=URL`` (or a journal file), else every
journal under ``sweep.dir`` (``multirun/``): one ``<dir>/<study>/study.log`` per study.
Nothing is created by looking.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna

from rltrain.config import DEFAULT_CONF_DIR, mask_url
from sweep.engine import winner as winner_
from sweep.engine.settings import SweepSettings, env_group, resolve_storage
from sweep.engine.storage import read_storage


@dataclass
class StudyRow:
    """One study of a storage, as ``studies`` lists it."""

    name: str
    storage: str
    env: str
    counts: dict[str, int]  # COMPLETE, PRUNED, FAIL, RUNNING -> trials
    best: float | None
    winner: int | None  # the recheck's winner, when the recheck is done
    last_activity: datetime | None

    def cells(self) -> list[str]:
        counts = [str(self.counts.get(s, 0)) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")]
        when = f"{self.last_activity:%Y-%m-%d %H:%M}" if self.last_activity else "-"
        return [self.name, self.env, *counts, "-" if self.best is None else f"{self.best:g}",
                "-" if self.winner is None else f"trial {self.winner}", when]


def storages(storage: str = "", sweep_dir: str = "") -> list[str]:
    """Where the studies are: the ``sweep.storage`` given, else every journal file under
    ``sweep.dir`` (none: an empty list)."""
    if storage:
        return [resolve_storage(storage, Path("."))]
    folder = Path(sweep_dir or SweepSettings.dir)
    return [str(p) for p in sorted(folder.glob("*/study.log"))]


def _env(study: optuna.Study) -> str:
    attrs = study.user_attrs
    if attrs.get("env"):
        return str(attrs["env"])
    chosen = [f.split("=", 1)[1] for f in attrs.get("fixed", []) if f.startswith("env=")]
    return chosen[-1] if chosen else env_group([], DEFAULT_CONF_DIR)  # the default env


def describe(study: optuna.Study, where: str) -> StudyRow:
    """A study's row: trials by state, best value, recheck winner, last activity."""
    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    values = [t.value for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    pick = max if study.direction.name == "MAXIMIZE" else min
    times = [d for t in trials for d in (t.datetime_start, t.datetime_complete) if d]
    winner = winner_.standing(study)
    return StudyRow(study.study_name, where, _env(study), counts,
                    pick(values) if values else None, winner["trial"] if winner else None,
                    max(times) if times else None)


def rows(where: str) -> list[StudyRow]:
    """Every study of one storage."""
    storage = open_for_reading(where)
    return [describe(optuna.load_study(study_name=s.study_name, storage=storage), mask_url(where))
            for s in sorted(storage.get_all_studies(), key=lambda s: s.study_name)]


def open_for_reading(where: str) -> Any:
    """A storage to list, read and delete studies in (sweep/engine/storage.py's
    ``read_storage``), with Optuna's logging quiet."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return read_storage(where)
