"""The command line: per-command --help, Hydra's --cfg job and --info, today's grammar."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rltrain.config import compose_config, min_warmup
from sweep import cli
from sweep.__main__ import main
from tests.conftest import run_python


def test_top_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in cli.DESCRIPTIONS:
        assert f"    {command}" in out


@pytest.mark.parametrize("command", list(cli.DESCRIPTIONS))
def test_every_command_has_its_own_help(command: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m sweep {command} ")


@pytest.mark.parametrize(("args", "command", "overrides", "typed"), [
    ([], "train", [], {}),
    (["agent.lr=0.01"], "train", ["agent.lr=0.01"], {}),
    (["agent.lr=0.01", "-m"], "multirun", ["agent.lr=0.01"], {}),
    (["--multirun", "sweep.n_trials=3"], "multirun", ["sweep.n_trials=3"], {}),
    (["train", "-m", "x=1"], "multirun", ["x=1"], {}),
    (["best", "sweep.study_name=s", "--json", "export=e"], "best", ["sweep.study_name=s"],
     {"export": "e"}),  # the command's own options reach it typed, not as overrides
    (["evaluate", "best", "seeds=3"], "evaluate", [],
     {"target": "best", "seeds": 3, "jobs": 2, "threshold": None, "first": 0}),
])
def test_todays_grammar_still_parses(args: list[str], command: str, overrides: list[str],
                                     typed: dict[str, object]) -> None:
    cmd = cli.parse(args)
    assert cmd is not None and (cmd.name, cmd.overrides) == (command, overrides)
    assert cmd.as_json == ("--json" in args)
    assert {key: getattr(cmd, key) for key in typed} == typed


@pytest.mark.parametrize(("args", "overrides"), [
    ([], ["train.nb_steps=300"]),  # no arguments at all: the tutorial, still a train line
    (["seed=3"], ["seed=3", "train.nb_steps=300"]),
    (["multirun", "seed=3"], ["seed=3", "train.nb_steps=300", "sweep.n_trials=2"]),
    (["best"], []),
])
def test_sweep_overrides_reach_every_train_and_sweep_line(
        args: list[str], overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cli.OVERRIDES_VAR, "train.nb_steps=300 sweep.n_trials=2")
    cmd = cli.parse(args)
    assert cmd is not None and cmd.overrides == overrides


def test_cfg_job_and_info_answer_without_tensorflow_mlflow_or_files(workdir: Path) -> None:
    probe = textwrap.dedent("""
        import sys
        from sweep.__main__ import main
        codes = [main(["--cfg", "job", "agent.model.units=32",
                       "tracking.uri=http://u:PASSWORD@127.0.0.1:1"]),
                 main(["multirun", "--cfg", "job", "agent.lr=0.01", "agent.model.units=8,16",
                       "sweep.storage=postgresql://u:PASSWORD@127.0.0.1:1/db"]),
                 main(["worker", "-c", "job"]),
                 main(["--info"])]
        loaded = [m for m in ("tensorflow", "mlflow", "rl") if m in sys.modules]
        print("codes", codes, "loaded", loaded)
    """)
    proc = run_python("-c", probe, cwd=workdir, timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "codes [0, 0, 0, 0] loaded []" in out
    assert "PASSWORD" not in out + proc.stderr
    assert "  units: 32\n" in out and "uri: http://u:***@127.0.0.1:1" in out  # train's config
    assert "storage: postgresql://u:***@127.0.0.1:1/db" in out                # the sweep's
    assert "  agent.model.units: 8,16" in out and "- agent.lr=0.01" in out
    assert "config groups" in out and "search spaces" in out
    assert "  cartpole:" in out and "  acrobot:" in out  # each env group's own space
    assert not list(workdir.iterdir())  # no study, no MLflow store, no outputs


@pytest.mark.parametrize(("overrides", "minimum"), [
    ([], 1),                                          # keras-rl2 samples at step > warm-up
    (["agent.memory.window_length=3"], 3),            # ... from window_length + 2 entries
    (["agent.memory.window_length=2", "agent.memory_interval=2"], 5),
    (["agent.train_interval=3"], 0),                  # the first batch comes at step 3
    (["agent.train_interval=4", "agent.memory.window_length=4"], 4),
])
def test_warmup_minimum_follows_keras_rl2_sampling(overrides: list[str], minimum: int) -> None:
    assert min_warmup(compose_config(overrides)) == minimum
