"""best, reproduce best and the exported experiment file, on a real tiny study."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest

from rltrain.config import DEFAULT_CONF_DIR, compose_config
from rltrain.train import train
from sweep.commands.best import export
from sweep.engine.winner import Winner
from tests.conftest import run_cli

SWEEP = ["multirun", "sweep.study_name=tiny", "sweep.n_trials=3", "sweep.n_jobs=1",
         "sweep.pruner=none", "train.nb_steps=300", "train.eval_interval=100",
         "train.eval_episodes=2", "train.test_episodes=1", "agent.memory.limit=1000",
         "sweep.seeds_per_trial=1", "sweep.recheck_top_k=0",  # the recheck: test_robust.py
         "sweep.register_best=false"]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[optuna.Study, Path, str]:
    """One tiny study for the module: (study, its folder, its tracking URI)."""
    workdir = tmp_path_factory.mktemp("best")
    tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
    proc = run_cli(*SWEEP, f"tracking.uri={tracking_uri}", cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(workdir / "multirun/tiny/study.log")))
    return optuna.load_study(study_name="tiny", storage=storage), workdir, tracking_uri


def test_best_names_the_best_trial_and_reproduces(made: tuple[optuna.Study, Path, str]) -> None:
    study, workdir, tracking_uri = made
    proc = run_cli("best", "sweep.study_name=tiny", "--json", cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    best = json.loads(proc.stdout)
    values = {t.number: t.value for t in study.trials if t.value is not None}
    assert best["trial"] == max(values, key=lambda n: values[n])
    assert best["value"] == max(values.values())
    assert best["run_id"] == study.trials[best["trial"]].user_attrs["run_id"]
    assert best["params"] == study.trials[best["trial"]].params

    # copy the multirun's line, change the verb: what reproduce does not use is a note
    proc = run_cli("reproduce", "best", *SWEEP[1:], f"tracking.uri={tracking_uri}", cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("match: run ") and best["run_id"] in proc.stdout
    assert "note: reproduce uses sweep.*, env=, search=, tracking.* and train.progress/threads; " \
           "ignored: train.nb_steps=300" in proc.stderr


def test_exported_experiment_composes_and_trains(made: tuple[optuna.Study, Path, str]) -> None:
    study, workdir, _ = made
    name = f"test-export-{workdir.name}"
    path = DEFAULT_CONF_DIR / "experiment" / f"{name}.yaml"
    try:
        proc = run_cli("best", "sweep.study_name=tiny", f"export={name}", cwd=workdir)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"python -m sweep +experiment={name}" in proc.stdout
        assert path.read_text().startswith("# @package _global_")
        cfg = compose_config([f"+experiment={name}", "train.progress=false"])
        best = study.best_trial
        assert cfg.seed == best.user_attrs["seeds"][0]  # the first seed: its run, exactly
        for key, value in best.params.items():
            node = cfg
            for part in key.split("."):
                node = node[part]
            assert node == value
        result = train(cfg, workdir / "exported")
        assert result.nb_steps == 300 and result.evaluations
    finally:
        path.unlink(missing_ok=True)


def test_export_puts_config_group_choices_in_defaults(tmp_path: Path) -> None:
    """A swept or fixed group (env=...) becomes ``override /env: X``; the file loads."""
    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf, ignore=shutil.ignore_patterns("test-export-*"))
    (conf / "env" / "cartpole_v0.yaml").write_text("id: CartPole-v0\n")
    best = Winner("s", 4, 200.0, "abc", {"env": "cartpole_v0", "agent.lr": 0.002},
                     ["agent.impl=fast", "tracking.uri=http://u:***@h:1", "env=cartpole_v0",
                      "agent.lr=0.002", "seed=4"])
    path = export(best, "grouped", conf)
    assert "  - override /env: cartpole_v0\n  - _self_\n" in path.read_text()
    assert "tracking" not in path.read_text().split("\n", 3)[3]  # not where runs went
    cfg = compose_config(["+experiment=grouped"], conf)
    assert (cfg.env.id, cfg.agent.lr, cfg.seed, cfg.tracking.uri) == ("CartPole-v0", 0.002, 4, "")


@pytest.mark.parametrize(("args", "message"), [
    (["best", "sweep.study_name=nope"], "sweep.study_name=nope: no study at"),
    (["best", "sweep.nonsense=1"], "sweep.nonsense"),
    (["best", "export=bad/name"], "export=bad/name"),
    (["reproduce", "best", "sweep.study_name=nope"], "sweep.study_name=nope: no study at"),
])
def test_bad_input(args: list[str], message: str, workdir: Path) -> None:
    proc = run_cli(*args, cwd=workdir)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {message}")
    assert not (workdir / "multirun" / "nope").exists()

