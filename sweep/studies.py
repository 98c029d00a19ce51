"""``python -m sweep studies [delete NAME --yes]``: the studies of a storage, and deleting one.

Which storage, as multirun finds it: ``sweep.storage=URL`` (or a journal file), else every
journal under ``sweep.dir`` (``multirun/``): one ``<dir>/<study>/study.log`` per study.
Deleting a study removes it from its storage (Optuna's ``delete_study``) and, for a study in
its own ``<dir>/<study>/`` folder, that folder (journal, trial folders, plots). Its MLflow
runs are kept: the command says how many, and in which experiment.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna

from rltrain.config import DEFAULT_CONF_DIR, ConfigError, mask_url
from sweep.engine.settings import SweepSettings, env_group, resolve_storage

KEYS = ("sweep.storage", "sweep.dir", "tracking.uri")  # what studies takes
USAGE = "studies takes [delete NAME --yes] sweep.storage=URL, sweep.dir=DIR, tracking.uri=URI"
HEADER = ("study", "env", "complete", "pruned", "failed", "running", "best", "winner",
          "last activity")


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


def options(args: Sequence[str]) -> dict[str, str]:
    """The ``key=value`` options of the line; ConfigError for any other key."""
    found: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if key not in KEYS or not sep:
            raise ConfigError(f"{mask_url(arg)}: {USAGE}")
        found[key] = value
    return found


def storages(opts: dict[str, str]) -> list[str]:
    """Where the studies are: the ``sweep.storage`` given, else every journal file under
    ``sweep.dir`` (none: an empty list)."""
    if opts.get("sweep.storage"):
        return [resolve_storage(opts["sweep.storage"], Path("."))]
    folder = Path(opts.get("sweep.dir") or SweepSettings.dir)
    return [str(p) for p in sorted(folder.glob("*/study.log"))]


def _env(study: optuna.Study) -> str:
    attrs = study.user_attrs
    if attrs.get("env"):
        return str(attrs["env"])
    chosen = [f.split("=", 1)[1] for f in attrs.get("fixed", []) if f.startswith("env=")]
    return chosen[-1] if chosen else env_group([], DEFAULT_CONF_DIR)  # the default env


def describe(study: optuna.Study, where: str) -> StudyRow:
    """A study's row: trials by state, best value, recheck winner, last activity."""
    from sweep.engine import winner as winner_

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
    storage = _open(where)
    return [describe(optuna.load_study(study_name=s.study_name, storage=storage), mask_url(where))
            for s in sorted(storage.get_all_studies(), key=lambda s: s.study_name)]


def _open(where: str) -> Any:
    from sweep.engine.storage import read_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return read_storage(where)


def table(found: list[StudyRow]) -> str:
    cells = [list(HEADER), *(r.cells() for r in found)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def list_studies(opts: dict[str, str]) -> int:
    where = storages(opts)
    if not where:
        print(f"no studies under {opts.get('sweep.dir') or SweepSettings.dir}/ (give "
              "sweep.dir=DIR, or sweep.storage=URL for a database)")
        return 0
    found = [r for w in where for r in rows(w)]
    print(table(found) if found else f"no studies in {mask_url(where[0])}")
    if not opts.get("sweep.storage"):
        print(f"({len(where)} journal file(s) under "
              f"{opts.get('sweep.dir') or SweepSettings.dir}/)")
    return 0


def find(name: str, opts: dict[str, str]) -> tuple[str, Any, StudyRow]:
    """``(storage, opened storage, row)`` of study ``name``; ConfigError if none has it."""
    for where in storages(opts):
        storage = _open(where)
        if name in {s.study_name for s in storage.get_all_studies()}:
            return where, storage, describe(optuna.load_study(study_name=name, storage=storage),
                                            mask_url(where))
    shown = mask_url(opts.get("sweep.storage") or
                     f"{opts.get('sweep.dir') or SweepSettings.dir}/*/study.log")
    raise ConfigError(f"studies delete {name}: no such study in {shown}")


def delete(name: str, opts: dict[str, str], yes: bool) -> int:
    """Delete study ``name`` (``yes``: confirmed); say what became of its MLflow runs."""
    where, storage, found = find(name, opts)
    trials = sum(found.counts.values())
    if not yes:
        raise ConfigError(f"studies delete {name}: {trials} trial(s) in {mask_url(where)} "
                          "would be deleted; add --yes to delete it")
    optuna.delete_study(study_name=name, storage=storage)
    said = f"deleted study {name} ({trials} trial(s)) from {mask_url(where)}"
    folder = Path(where).parent
    own = not opts.get("sweep.storage")  # <sweep.dir>/NAME/study.log: the study's own folder
    if own and folder.name == name and not storage.get_all_studies():
        shutil.rmtree(folder)
        said += f", and its folder {folder}/"
    print(said)
    print(runs_line(name, opts.get("tracking.uri", "")))
    return 0


def runs_line(name: str, uri: str) -> str:
    """What became of the study's MLflow runs: kept, how many, in which experiment."""
    import os

    from rltrain.tracking import study_runs

    counts = study_runs(uri, name)
    store = mask_url(uri or os.environ.get("MLFLOW_TRACKING_URI", "") or "sqlite:///mlflow.db")
    if not counts:
        return f"no MLflow runs of study {name} in {store}"
    where = ", ".join(f"{n} in experiment {e}" for e, n in sorted(counts.items()))
    return f"its MLflow runs are kept: {where} ({store}, tag sweep.study={name})"


def cmd_studies(args: Sequence[str], yes: bool = False) -> int:
    """``studies``: list; ``studies delete NAME --yes``: delete one."""
    words = [a for a in args if "=" not in a]
    opts = options([a for a in args if "=" in a])
    if not words or words == ["list"]:
        return list_studies(opts)
    if words[0] == "delete" and len(words) == 2:
        return delete(words[1], opts, yes)
    raise ConfigError(f"{' '.join(words)}: {USAGE}")
