"""The search space and the sweep settings: Hydra's grammar -> Optuna, checked before TF."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from rltrain.config import CONFIG_DIR_VAR, ConfigError
from sweep.engine import space
from sweep.engine.settings import plan, split
from tests.conftest import run_cli, run_python


def dimension(expression: str):
    """The distribution ``expression`` gives as the only command-line entry."""
    key = expression.split("=", 1)[0]
    return plan([expression]).space.dimensions[key].distribution


@pytest.mark.parametrize("expression, expected", [
    ("agent.model.units=choice(16,32,64)", CategoricalDistribution((16, 32, 64))),
    ("agent.model.units=16,32", CategoricalDistribution((16, 32))),
    ("agent.model.layers=range(1,4)", IntDistribution(1, 3)),
    ("agent.memory.limit=range(1000,5001,2000)", IntDistribution(1000, 5000, step=2000)),
    ("agent.policy.value_min=range(0.05,0.2,0.05)", FloatDistribution(0.05, 0.15, step=0.05)),
    ("agent.policy.value_min=interval(0.01,0.2)", FloatDistribution(0.01, 0.2)),
    ("agent.lr=tag(log,interval(1e-4,1e-2))", FloatDistribution(1e-4, 1e-2, log=True)),
    ("agent.memory.limit=interval(1000,50000)", IntDistribution(1000, 50000)),
    ("agent.memory.limit=tag(log, interval(1000, 50000))", IntDistribution(1000, 50000, log=True)),
    ("agent.target_model_update=tag(int,interval(100,2000))", IntDistribution(100, 2000)),
    ("agent.target_model_update=choice(0.01,0.1,500,2000)",
     CategoricalDistribution((0.01, 0.1, 500, 2000))),
    ("agent.model.activation=choice(relu,tanh)", CategoricalDistribution(("relu", "tanh"))),
    ("agent.enable_double_dqn=choice(true,false)", CategoricalDistribution((True, False))),
    ("env=choice(cartpole)", CategoricalDistribution(("cartpole",))),
])
def test_grammar_to_distribution(expression: str, expected) -> None:
    assert dimension(expression) == expected


@pytest.mark.parametrize("args, message", [
    (["agent.nope=choice(1,2)"], "agent.nope: not a key of the training config"),
    (["agent.model=choice(1,2)"], "agent.model: is a section of the config"),
    (["agent.model.units=interval(0.5,8)"], "an integer key takes integer bounds"),
    (["agent.lr=tag(exp,interval(1e-4,1e-2))"], "unknown tag exp"),
    (["agent.lr=interval(1e-2,1e-4)"], "`low <= high` must hold"),
    (["agent.lr=tag(log,interval(0,1))"], "`low > 0` must hold for `log=True`"),
    (["agent.model.activation=interval(1,2)"], "a str key takes choice(...)"),
    (["agent.model.units=range(5,5)"], "empty range"),
    (["agent.lr=interval(1e-4"], "agent.lr=interval(1e-4: "),
    (["agent.model.units=choice(0,16)"],
     "agent.model.units=choice(0,16): agent.model.units=0: must be >= 1"),
    (["agent.model.activation=choice(relu,relu6)"], "agent.model.activation=relu6: must be one"),
    (["agent.policy.value_max=0.5", "agent.policy.value_min=choice(0.1,0.9)"],
     "agent.policy.value_min=0.9: must be <= agent.policy.value_max (0.5)"),
    (["agent.model.units=choice(sixteen)"], "Value 'sixteen' of type 'str' could not be"),
    (["train.nb_steps=0"], "train.nb_steps=0: must be >= 1"),
    (["sweep.sampler=bogus"], "sweep.sampler=bogus: must be one of tpe, random, cmaes, gp"),
    (["sweep.pruner=threshold"], "sweep.prune_threshold=nan: sweep.pruner=threshold needs"),
    (["sweep.n_trials=0"], "sweep.n_trials=0: must be >= 1"),
    (["sweep.study_name=a/b"], "sweep.study_name=a/b: letters, digits"),
    (["sweep.storage=nowhere"], "sweep.storage=nowhere: give an Optuna storage URL"),
    (["sweep.nope=1"], "sweep.nope: Key 'nope' not in 'SweepSettings'"),
    (["+sweep.nope=1"], "+sweep.nope=1: sweep.nope is not a key"),
    (["seed=choice(1,2,3)"], "seed=choice(1,2,3): seed cannot be searched; use sweep.seed=N"),
    (["seed=range(0,4)"], "seed=range(0,4): seed cannot be searched"),
    (["search=nope"], "search=nope: no such option (conf/search/nope.yaml); choose one of"),
    (["env=pong"], "env=pong: no such option (conf/env/pong.yaml); choose one of acrobot, atari,"),
    (["agent.model=dense"], "agent.model=dense: no such option (conf/agent/model/dense.yaml); "
                            "choose one of conv, mlp"),
    (["train.eval_interval=0"], "sweep.metric=eval/mean_reward needs evaluations"),
    (["train.eval_interval=0", "sweep.metric=test/mean_reward"],
     "sweep.pruner=median needs periodic evaluations"),
])
def test_bad_input_is_one_clear_line(args: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        plan(args)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("sampler", "package"), [("gp", "torch"), ("cmaes", "cmaes")])
def test_a_sampler_names_its_missing_package(sampler: str, package: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock installs both (the samplers extra); an install without it is told what to
    add. ``sys.modules[name] = None`` is Python's own way to make a package unimportable."""
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(ConfigError, match=f"sweep.sampler={sampler}: needs the '{package}' "):
        plan([f"sweep.sampler={sampler}"])


def test_command_line_adds_replaces_fixes_and_drops_dimensions() -> None:
    default = plan([]).space
    assert default.describe()["agent.lr"] == "tag(log, interval(5e-4, 3e-3))"
    assert {"agent.model.units", "agent.model.layers", "agent.memory.limit",
            "agent.policy.nb_steps", "agent.policy.value_min", "agent.target_model_update",
            "agent.lr", "agent.batch_size"} <= set(default.dimensions)
    changed = plan(["agent.lr=choice(0.001,0.01)",      # replaces
                    "agent.gamma=interval(0.9,0.999)",  # adds
                    "agent.model.layers=2",             # fixes
                    "~agent.batch_size",                # drops: the config's own value
                    "train.nb_steps=500"]).space        # fixes what the search file fixed
    assert changed.dimensions["agent.lr"].distribution == CategoricalDistribution((0.001, 0.01))
    assert changed.dimensions["agent.gamma"].distribution == FloatDistribution(0.9, 0.999)
    assert "agent.model.layers" not in changed.dimensions
    assert "agent.batch_size" not in changed.dimensions
    assert changed.fixed["agent.model.layers"] == "agent.model.layers=2"
    assert changed.fixed["train.nb_steps"] == "train.nb_steps=500"
    assert "agent.batch_size" not in changed.fixed
    assert list(changed.fixed.values()).count("train.nb_steps=500") == 1


def test_sweep_settings_and_search_choice_go_to_the_sweep() -> None:
    own, trial = split(["sweep.n_trials=3", "search=default", "agent.lr=0.01", "seed=3",
                        "+sweep.x=1"])
    assert own == ["sweep.n_trials=3", "search=default", "+sweep.x=1"]
    assert trial == ["agent.lr=0.01", "seed=3"]
    p = plan(["sweep.n_trials=3", "sweep.sampler=random", "sweep.pruner=hyperband", "seed=3"])
    assert (p.settings.n_trials, p.settings.sampler, p.settings.pruner) == (3, "random",
                                                                            "hyperband")
    assert p.seed_fixed and p.storage == str(Path("multirun/dqn-cartpole/study.log"))
    assert math.isnan(p.settings.prune_threshold)


@pytest.mark.parametrize("value", [0.001, 1e-05, 16, -3, True, False, "relu", "a b", "16",
                                   "it's", "true", "/tmp/x y/z"])
def test_values_round_trip_through_hydra_overrides(value) -> None:
    text = space.format_value(value)
    parsed = space.parse(f"k={text}").value()
    assert parsed == value and type(parsed) is type(value)


def test_cli_rejects_bad_input_before_tensorflow(workdir: Path) -> None:
    proc = run_cli("multirun", "agent.nope=choice(1,2)", cwd=workdir)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: agent.nope: not a key of the training config (conf/config.yaml)"]
    proc = run_cli("-m", "sweep.sampler=bogus", cwd=workdir)  # Hydra's flag works too
    assert proc.returncode == 2 and "sweep.sampler=bogus" in proc.stderr
    assert not list(workdir.iterdir())  # no study, no MLflow store, no outputs
    probe = run_python("-c", "import sys\nfrom sweep.engine.settings import plan\n"
                       "plan(['agent.lr=tag(log,interval(1e-4,1e-2))'])\n"
                       "print(sorted(m for m in ('tensorflow', 'mlflow', 'rl') "
                       "if m in sys.modules))", cwd=workdir)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.strip() == "[]"


def test_a_search_space_carries_the_sweep_settings_it_was_built_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sweep.*`` entries of a search file are sweep settings, not trial keys; the command
    line still wins; a bad one is one line naming the key, the value and the space."""
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "mine.yaml").write_text(
        "sweep.metric: test/mean_reward\nsweep.prune_warmup_steps: 3000\n"
        "agent.lr: tag(log, interval(1e-4, 1e-2))\n")
    (tmp_path / "search" / "typo.yaml").write_text("sweep.prune_warmup: 3000\nagent.lr: 0.01\n")
    (tmp_path / "search" / "word.yaml").write_text("sweep.prune_warmup_steps: soon\n")
    monkeypatch.setenv(CONFIG_DIR_VAR, str(tmp_path))
    mine = plan(["search=mine"])
    assert (mine.settings.metric, mine.settings.prune_warmup_steps) == ("test/mean_reward", 3000)
    assert list(mine.space.dimensions) == ["agent.lr"]
    assert not [k for k in mine.space.fixed if k.startswith("sweep.")]
    given = plan(["search=mine", "sweep.prune_warmup_steps=500"])
    assert (given.settings.metric, given.settings.prune_warmup_steps) == ("test/mean_reward", 500)
    assert plan([]).settings.metric == "eval/mean_reward"  # the shipped default is untouched
    for name, message in [("typo", "sweep.prune_warmup=3000 (search=typo): Key 'prune_warmup'"),
                          ("word", "sweep.prune_warmup_steps=soon (search=word): Value 'soon'")]:
        with pytest.raises(ConfigError) as caught:
            plan([f"search={name}"])
        assert message in str(caught.value) and "\n" not in str(caught.value)
