"""``python -m sweep studies`` and ``sweep.api`` on a real tiny study (journal, with a recheck),
and on SQLite and PostgreSQL storages (real servers, real Optuna)."""

from __future__ import annotations

import csv
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from sweep import api
from sweep.engine.storage import sqlalchemy_url
from sweep.present import table
from tests.conftest import ROOT, run_cli
from tests.servers import PASSWORD, postgres

SWEEP = ["multirun", "sweep.study_name=tiny", "sweep.n_trials=2", "sweep.n_jobs=1",
         "sweep.pruner=none", "train.nb_steps=300", "train.eval_interval=100",
         "train.eval_episodes=2", "train.test_episodes=1", "agent.memory.limit=1000",
         "sweep.seeds_per_trial=1", "sweep.recheck_top_k=1", "sweep.recheck_seeds=1",
         "sweep.register_best=false", "tracking.log_models=false"]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One tiny study with its recheck done: (its working folder, its tracking URI)."""
    workdir = tmp_path_factory.mktemp("studies")
    tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
    proc = run_cli(*SWEEP, f"tracking.uri={tracking_uri}", cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir, tracking_uri


def test_api_loads_trials_and_winner(made: tuple[Path, str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    workdir, _ = made
    monkeypatch.chdir(workdir)
    study = api.load("sweep.study_name=tiny train.nb_steps=300")  # the multirun's line
    trials, raw = study.trials, study.optuna.trials
    assert list(trials.columns) == [*table.COLUMNS, *sorted(f"params_{k}" for k in raw[0].params)]
    assert list(trials["number"]) == [0, 1] and set(trials["state"]) == {"COMPLETE"}
    assert list(trials["value"]) == [t.value for t in raw]
    assert list(trials["run_id"]) == [t.user_attrs["run_id"] for t in raw]
    assert list(trials["seeds"]) == [t.user_attrs["seeds"] for t in raw]
    assert trials["params_agent.lr"].tolist() == [t.params["agent.lr"] for t in raw]

    winner = study.winner
    assert winner is not None and winner.recheck is not None  # the recheck's winner
    assert trials.loc[trials["winner"], "number"].tolist() == [winner.trial]
    leader = trials.set_index("number").loc[winner.trial]
    assert leader["recheck_tests"] == winner.recheck["tests"]
    assert len(leader["recheck_run_ids"]) == 1
    assert leader["recheck_mean"] == pytest.approx(winner.recheck["mean"])
    assert winner.command.startswith("python -m sweep train ") and "seed=" in winner.command

    same = api.load(study_name="tiny", storage=str(workdir / "multirun/tiny/study.log"))
    assert same.winner == winner
    listed = api.studies()
    assert listed[["name", "env", "complete", "winner"]].values.tolist() == \
        [["tiny", "cartpole", 2, winner.trial]]


def test_trials_csv_has_the_documented_columns(made: tuple[Path, str]) -> None:
    """trials.csv, api.Study.trials, the api's docstring and docs/runs.md's table agree."""
    workdir, _ = made
    with (workdir / "multirun/tiny/trials.csv").open() as handle:
        header = next(csv.reader(handle))
    fixed = [c for c in header if not c.startswith(table.PARAMS)]
    assert fixed == list(table.COLUMNS) and len(header) > len(fixed)
    readme = (ROOT / "docs" / "runs.md").read_text().split("## A study in a notebook", 1)[1]
    readme = readme.split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z_<>]+)` \|", readme, re.MULTILINE)
    assert documented == [*table.COLUMNS, "params_<key>"]
    doc = re.findall(r"^    ([a-z_<>]+) {2,}", api.__doc__ or "", re.MULTILINE)
    assert doc == [*table.COLUMNS, "params_<key>"]


def test_studies_lists_and_deletes_a_journal_study(made: tuple[Path, str],
                                                   tmp_path: Path) -> None:
    workdir, tracking_uri = made
    proc = run_cli("studies", cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    header, line = proc.stdout.splitlines()[:2]
    assert header.split()[:7] == ["study", "env", "complete", "pruned", "failed", "running",
                                  "best"]
    study = api.load(study_name="tiny", storage=str(workdir / "multirun/tiny/study.log"))
    assert line.split()[:8] == ["tiny", "cartpole", "2", "0", "0", "0",
                                f"{max(t.value for t in study.optuna.trials):g}", "trial"]
    assert "(1 journal file(s) under multirun/)" in proc.stdout

    shutil.copytree(workdir / "multirun", tmp_path / "copy")  # the module's study stays
    refused = run_cli("studies", "delete", "tiny", f"sweep.dir={tmp_path / 'copy'}", cwd=workdir)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        f"error: studies delete tiny: 2 trial(s) in {tmp_path}/copy/tiny/study.log would be "
        "deleted; add --yes to delete it"]
    assert (tmp_path / "copy/tiny/study.log").is_file()

    proc = run_cli("studies", "delete", "tiny", "--yes", f"sweep.dir={tmp_path / 'copy'}",
                   f"tracking.uri={tracking_uri}", cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("keras-rl-cartpole").experiment_id
    n = len(client.search_runs([experiment], "tags.`sweep.study` = 'tiny'"))
    assert n >= 6  # parent, 2 trials, 2 seeds, recheck, recheck seed
    assert proc.stdout.splitlines() == [
        f"deleted study tiny (2 trial(s)) from {tmp_path}/copy/tiny/study.log, and its folder "
        f"{tmp_path}/copy/tiny/",
        f"its MLflow runs are kept: {n} in experiment keras-rl-cartpole ({tracking_uri}, "
        "tag sweep.study=tiny)"]
    assert not (tmp_path / "copy/tiny").exists()
    assert len(client.search_runs([experiment], "tags.`sweep.study` = 'tiny'")) == n

    gone = run_cli("studies", "delete", "tiny", "--yes", f"sweep.dir={tmp_path / 'copy'}",
                   cwd=workdir)
    assert gone.returncode == 2 and gone.stderr.strip().splitlines() == [
        f"error: studies delete tiny: no such study in {tmp_path}/copy/*/study.log"]


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres() as url:
        yield url


def _storage(url: str) -> Any:
    if "://" in url:
        return sqlalchemy_url(url)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url))


def _fill(url: str, name: str, states: list[TrialState]) -> None:
    """A study made by Optuna itself, with finished trials of ``states``."""
    study = optuna.create_study(study_name=name, storage=_storage(url), direction="maximize")
    study.set_user_attr("env", "acrobot")
    for i, state in enumerate(states):
        study.add_trial(create_trial(
            state=state, value=float(i) if state == TrialState.COMPLETE else None,
            params={"agent.lr": 0.001 * (i + 1)},
            distributions={"agent.lr": FloatDistribution(1e-4, 1e-2, log=True)},
            user_attrs={"run_id": f"run{i}", "seeds": [i * 100]}))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "journal"])
def test_studies_on_a_database(kind: str, workdir: Path, request: pytest.FixtureRequest) -> None:
    """A database, or one journal file given as sweep.storage (its folder is kept)."""
    url = {"sqlite": f"sqlite:///{workdir / 'studies.db'}",
           "journal": str(workdir / "mine" / "both.log")}.get(kind) \
        or request.getfixturevalue("pg_url")
    (workdir / "mine").mkdir()
    names = (f"a-{kind}", f"b-{kind}")
    _fill(url, names[0], [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED])
    _fill(url, names[1], [TrialState.FAIL])
    proc = run_cli("studies", f"sweep.storage={url}", cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert PASSWORD not in proc.stdout + proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[1:]}
    assert rows[names[0]][1:8] == ["acrobot", "2", "1", "0", "0", "1", "-"]
    assert rows[names[1]][1:8] == ["acrobot", "0", "0", "1", "0", "-", "-"]
    assert api.load(study_name=names[0], storage=url).trials["state"].tolist() == \
        ["COMPLETE", "COMPLETE", "PRUNED"]

    proc = run_cli("studies", "delete", names[1], "--yes", f"sweep.storage={url}",
                   f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}", cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0].startswith(f"deleted study {names[1]} (1 trial(s)) from ")
    assert proc.stdout.splitlines()[1] == f"no MLflow runs of study {names[1]} in " \
                                          f"sqlite:///{workdir / 'mlflow.db'}"
    assert PASSWORD not in proc.stdout + proc.stderr
    assert optuna.get_all_study_names(_storage(url)) == [names[0]]
    unknown = run_cli("studies", "delete", names[1], "--yes", f"sweep.storage={url}",
                      cwd=workdir)
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1
    assert f"studies delete {names[1]}: no such study in" in unknown.stderr
    assert PASSWORD not in unknown.stderr
