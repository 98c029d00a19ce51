"""A user's own env, as the README's "Tune your own env" walks through it: the example
package ``examples/corridor`` installed into a scratch folder, its conf folder copied outside
the checkout, and every command run there as a user types it (``--config-dir``, env kwargs,
wrappers, 2 worker processes, the recheck). Bad env input is one line, exit 2, nothing
written, before TensorFlow is imported. A wheel of this project, installed into a fresh
venv, trains from a temporary folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from tests.conftest import ROOT, new_store, run_cli, run_python

EXAMPLE = ROOT / "examples" / "corridor"
TINY = ["train.nb_steps=400", "train.eval_interval=200", "train.eval_episodes=1",
        "train.test_episodes=2", "train.progress=false", "agent.nb_steps_warmup=50"]
ENV = "env.id=corridor_env:Corridor-v0"
FLAT = "{_target_:gymnasium.wrappers.FlattenObservation}"
LIMIT = "{_target_:gymnasium.wrappers.TimeLimit,max_episode_steps:30}"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example env package, pip-installed into a scratch folder (not into the venv)."""
    target, source = tmp_path_factory.mktemp("site"), tmp_path_factory.mktemp("src") / "pkg"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--no-build-isolation", "--target", str(target), str(source)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (target / "corridor_env" / "__init__.py").is_file()
    return target


@pytest.fixture
def user(tmp_path: Path, site: Path, empty_store: Path) -> Path:
    """A folder outside the checkout holding the example's conf folder, as the README has
    the user copy it, and an empty ./mlflow.db."""
    assert ROOT not in tmp_path.parents
    shutil.copytree(EXAMPLE / "conf", tmp_path / "myconf")
    new_store(tmp_path, empty_store)
    return tmp_path


def sweep(*args: str, cwd: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``python -m sweep ARGS`` in ``cwd``, the project and the env package importable."""
    return run_cli(*args, cwd=cwd, path=(site,))


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_sweep_best_reproduce_evaluate_watch_register_outside_the_checkout(
        user: Path, site: Path) -> None:
    line = ["--config-dir", "myconf", "env=corridor"]
    out = ok(sweep("multirun", *line, "sweep.n_trials=2", "sweep.n_jobs=2",
                   "sweep.seeds_per_trial=1", "sweep.recheck_top_k=1", "sweep.recheck_seeds=2",
                   "sweep.pruner=none", "env.kwargs.length=choice(5,6)", *TINY,
                   cwd=user, site=site))
    assert "recheck on 2 fresh seeds" in out and "registered the winner" in out
    assert "--config-dir" in out.split("train it again:")[1].splitlines()[1]
    storage = JournalStorage(JournalFileBackend(str(user / "multirun/dqn-corridor/study.log")))
    study = optuna.load_study(study_name="dqn-corridor", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    client = MlflowClient(tracking_uri=f"sqlite:///{user / 'mlflow.db'}")
    for trial in study.trials:
        params = client.get_run(trial.user_attrs["run_id"]).data.params
        assert params["env.id"] == "corridor_env:Corridor-v0"
        assert params["env.kwargs.length"] == str(trial.params["env.kwargs.length"])
        assert "TimeLimit" in params["env.wrappers"]
        assert client.get_experiment_by_name("keras-rl-corridor") is not None

    best = ok(sweep("best", *line, "export=corridor_best", cwd=user, site=site))
    assert (user / "myconf/experiment/corridor_best.yaml").is_file(), best
    assert "match:" in ok(sweep("reproduce", "best", *line, cwd=user, site=site))
    evaluated = ok(sweep("evaluate", "best", "seeds=2", *line, cwd=user, site=site))
    assert "per seed (test)" in evaluated
    watched = ok(sweep("watch", "best", *line, cwd=user, site=site))
    assert list(user.glob("outputs/watch/*/agent.gif")), watched
    assert "version 2" in ok(sweep("register", "best", *line, cwd=user, site=site))
    again = ok(sweep("--config-dir", "myconf", "+experiment=corridor_best", "train.nb_steps=200",
                     "train.progress=false", cwd=user, site=site))
    assert again.startswith("run ")


@pytest.mark.parametrize(("observation", "wrappers"), [
    ("dict", f"[{FLAT},{LIMIT}]"),   # a Dict observation made flat, unbounded episodes made finite
    ("rgb", f"[{FLAT},{LIMIT}]"),    # an image made a vector
])
def test_wrappers_make_an_env_the_agent_takes(observation: str, wrappers: str, user: Path,
                                              site: Path) -> None:
    out = ok(sweep(ENV, f"env.kwargs.observation={observation}", f"env.wrappers={wrappers}",
                   "env.reward_threshold=0.9", *TINY, cwd=user, site=site))
    run_id = out.split()[1].rstrip(":")
    run = MlflowClient(tracking_uri=f"sqlite:///{user / 'mlflow.db'}").get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["env.kwargs.observation"] == observation
    assert "FlattenObservation" in run.data.params["env.wrappers"]
    steps = [int(m.value) for m in MlflowClient(f"sqlite:///{user / 'mlflow.db'}")
             .get_metric_history(run_id, "nb_episode_steps")]
    assert steps and max(steps) <= 30  # the time limit ends episodes that never end


BAD = [  # (command line, what the one error line must say)
    (["env.imports=[no_such_module]"],
     "env.imports: module no_such_module does not import (ModuleNotFoundError"),
    (["env.id=no_such_module:Env-v0"], "env.id=no_such_module:Env-v0: module no_such_module"),
    (["env.id=corridor_env:Nope-v0"], "env.id=corridor_env:Nope-v0: not a registered gymnasium "
                                      "environment (after importing corridor_env)"),
    ([ENV, "env.kwargs.lenght=3"], "env.kwargs.lenght: not accepted by corridor_env:Corridor-v0"),
    ([ENV, "env.kwargs.length=1"], "cannot be created (length=1: must be >= 2)"),
    ([ENV, "env.kwargs.observation=dict"], "the observation space is Dict("),
    ([ENV, "env.kwargs.observation=rgb"], "the observation space is an image (16, 128, 3)"),
    ([ENV, "env.wrappers=[{_target_:gymnasium.wrappers.NoSuchWrapper}]"],
     "env.wrappers[0]=gymnasium.wrappers.NoSuchWrapper: Error locating target"),
    ([ENV, "env.wrappers=[{_target_:gymnasium.wrappers.TimeLimit,max_steps:5}]"],
     "unexpected keyword argument 'max_steps'"),
    ([ENV, "env.wrappers=[TimeLimit]"], "env.wrappers[0]=TimeLimit: give {_target_: CLASS"),
    (["env.id=Pendulum-v1"], "DQN needs a discrete action space, this one is Box"),
    (["--config-dir", "no_such_folder", "env=corridor"], "--config-dir no_such_folder: no such"),
    (["--config-dir", "myconf", "env=bad"], "env.max_steps: Key 'max_steps' not in 'EnvConfig'"),
    (["--config-dir", "myconf", "env=nope"], "env=nope: no such option (no env/nope.yaml in"),
    (["multirun", "--config-dir", "myconf", "env=corridor", "env.kwargs.lenght=choice(1,2)"],
     "env.kwargs.lenght=choice(1,2): env.kwargs.lenght: not accepted"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_env_input_is_one_line_before_tensorflow(args: list[str], message: str, user: Path,
                                                     site: Path) -> None:
    (user / "myconf/env/bad.yaml").write_text("# @package _global_\nenv:\n  max_steps: 3\n")
    before = {p for p in user.rglob("*")}
    proc = run_python("-X", "importtime", "-m", "sweep", *args, cwd=user, timeout=120,
                      path=(site,))
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(errors) == 1 and message in errors[0], errors or proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    imported = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert imported and not [i for i in imported if i.rstrip().endswith("| tensorflow")]
    assert {p for p in user.rglob("*")} == before, "files were written"


def test_config_dir_groups_are_listed_and_win_over_the_shipped(user: Path, site: Path) -> None:
    listed = ok(sweep("--config-dir", "myconf", "--info", cwd=user, site=site))
    env_line = next(line for line in listed.splitlines() if line.strip().startswith("env "))
    assert "corridor" in env_line and "acrobot" in env_line
    assert "env.kwargs.length" in listed  # its search space, under search spaces
    (user / "myconf/env/cartpole.yaml").write_text(
        "# @package _global_\nenv:\n  id: CartPole-v0\n")  # same name as a shipped group
    shown = ok(sweep("--config-dir", "myconf", "env=cartpole", "--cfg", "job", cwd=user,
                     site=site))
    assert "id: CartPole-v0" in shown
    assert "id: CartPole-v1" in ok(sweep("env=cartpole", "--cfg", "job", cwd=user, site=site))


def test_a_wheel_in_a_fresh_venv_trains_from_a_temporary_folder(tmp_path: Path) -> None:
    wheels, venv, work = tmp_path / "wheels", tmp_path / "venv", tmp_path / "work"
    source = tmp_path / "source"  # a copy: building writes build/ beside the sources
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".*", "build", "*.egg-info", "mlruns", "outputs", "multirun", "mlflow.db", "tests"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of the checkout
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                            "--no-build-isolation", "-w", str(wheels), str(source)], env=env,
                           capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    assert "absent from the `packages`" not in built.stderr, built.stderr[-2000:]
    wheel = next(wheels.glob("keras_rl_sweep-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n.removeprefix("rltrain/") for n in archive.namelist()
                   if n.startswith("rltrain/conf/")}
    assert shipped == {str(p.relative_to(ROOT)) for p in (ROOT / "conf").rglob("*.yaml")}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    site = next(venv.glob("lib/python*/site-packages"))
    python = str(venv / "bin" / "python")
    done = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (site / "rltrain" / "conf" / "config.yaml").is_file()
    # then the dependencies, from this venv's site-packages (read as a plain path: its own
    # editable install of this project is a .pth hook that such a path line does not run)
    deps = next(p for p in map(Path, sys.path) if p.name == "site-packages" and p.is_dir())
    (site / "deps.pth").write_text(f"{deps}\n")
    work.mkdir()
    where = subprocess.run([python, "-c", "import sweep, rltrain.config as c; "
                            "print(sweep.__file__); print(c.DEFAULT_CONF_DIR)"], cwd=work,
                           env=env, capture_output=True, text=True, check=True, timeout=120)
    assert all(str(site) in line for line in where.stdout.splitlines()), where.stdout
    trained = subprocess.run([python, "-m", "sweep", "env=acrobot", *TINY], cwd=work, env=env,
                             capture_output=True, text=True, timeout=600, check=False)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (work / "mlflow.db").is_file() and list(work.glob("outputs/*/*/config.yaml"))
