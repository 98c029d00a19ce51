"""``python -m sweep studies [delete NAME --yes]``: the studies of a storage, and deleting one.

Which storage, as multirun finds it (sweep/engine/catalog.py): ``sweep.storage=URL`` (or a
journal file), else every journal under ``sweep.dir`` (``multirun/``). Deleting a study
removes it from its storage (Optuna's ``delete_study``) and, for a study in its own
``<dir>/<study>/`` folder, that folder (journal, trial folders, plots). Its MLflow runs are
kept: the command says how many, and in which experiment.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import optuna

from rltrain.config import ConfigError, mask_url
from rltrain.urls import tracking_store
from sweep.commands import Command
from sweep.engine.catalog import StudyRow, describe, open_for_reading, rows, storages
from sweep.engine.preflight import check_tracking
from sweep.engine.settings import SweepSettings

HEADER = ("study", "env", "complete", "pruned", "failed", "running", "best", "winner",
          "last activity")


def table(found: list[StudyRow]) -> str:
    cells = [list(HEADER), *(r.cells() for r in found)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def list_studies(storage: str, sweep_dir: str) -> int:
    where = storages(storage, sweep_dir)
    if not where:
        print(f"no studies under {sweep_dir or SweepSettings.dir}/ (give "
              "sweep.dir=DIR, or sweep.storage=URL for a database)")
        return 0
    found = [r for w in where for r in rows(w)]
    print(table(found) if found else f"no studies in {mask_url(where[0])}")
    if not storage:
        print(f"({len(where)} journal file(s) under {sweep_dir or SweepSettings.dir}/)")
    return 0


def find(name: str, storage: str, sweep_dir: str) -> tuple[str, Any, StudyRow]:
    """``(storage, opened storage, row)`` of study ``name``; ConfigError if none has it."""
    for where in storages(storage, sweep_dir):
        opened = open_for_reading(where)
        if name in {s.study_name for s in opened.get_all_studies()}:
            return where, opened, describe(optuna.load_study(study_name=name, storage=opened),
                                           mask_url(where))
    shown = mask_url(storage or f"{sweep_dir or SweepSettings.dir}/*/study.log")
    raise ConfigError(f"studies delete {name}: no such study in {shown}")


def delete(name: str, cmd: Command) -> int:
    """Delete study ``name`` (``--yes``: confirmed); say what became of its MLflow runs."""
    where, opened, found = find(name, cmd.storage, cmd.sweep_dir)
    trials = sum(found.counts.values())
    if not cmd.yes:
        raise ConfigError(f"studies delete {name}: {trials} trial(s) in {mask_url(where)} "
                          "would be deleted; add --yes to delete it")
    optuna.delete_study(study_name=name, storage=opened)
    said = f"deleted study {name} ({trials} trial(s)) from {mask_url(where)}"
    folder = Path(where).parent
    own = not cmd.storage  # <sweep.dir>/NAME/study.log: the study's own folder
    if own and folder.name == name and not opened.get_all_studies():
        shutil.rmtree(folder)
        said += f", and its folder {folder}/"
    print(said)
    print(runs_line(name, cmd.tracking_uri))
    return 0


def runs_line(name: str, uri: str) -> str:
    """What became of the study's MLflow runs: kept, how many, in which experiment."""
    from rltrain.tracking import study_runs

    counts = study_runs(uri, name)
    store = mask_url(tracking_store(uri))
    if not counts:
        return f"no MLflow runs of study {name} in {store}"
    where = ", ".join(f"{n} in experiment {e}" for e, n in sorted(counts.items()))
    return f"its MLflow runs are kept: {where} ({store}, tag sweep.study={name})"


def run(cmd: Command) -> int:
    """``studies``: list; ``studies delete NAME --yes``: delete one."""
    if cmd.delete is None:
        return list_studies(cmd.storage, cmd.sweep_dir)
    check_tracking(cmd.tracking_uri)  # the study's runs are counted there
    return delete(cmd.delete, cmd)
