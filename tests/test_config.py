"""Config composition, overrides and validation (no TensorFlow needed)."""

from __future__ import annotations

import math
import textwrap

import pytest

from rltrain.config import ConfigError, compose_config, flatten, mask_url, validate
from tests.conftest import run_cli, run_python


def test_defaults_are_the_tutorial() -> None:
    cfg = compose_config([])
    validate(cfg)
    a = cfg.agent
    assert (a.model.units, a.model.layers, a.model.activation) == (16, 3, "relu")
    assert (a.memory.limit, a.memory.window_length) == (50000, 1)
    p = a.policy
    assert (p.value_max, p.value_min, p.value_test, p.nb_steps) == (1.0, 0.1, 0.05, 10000)
    assert (a.nb_steps_warmup, a.target_model_update, a.lr) == (10, 0.01, 0.001)
    assert a.test_policy == "greedy" and math.isinf(a.delta_clip)
    t = cfg.train
    assert (t.nb_steps, t.log_interval, t.checkpoint_interval, t.test_episodes) == (
        50000, 100, 5000, 5)
    assert cfg.env.id == "CartPole-v1" and cfg.tracking.uri == ""


def test_overrides_change_values_and_types() -> None:
    cfg = compose_config(["agent.model.units=64", "agent.memory.limit=10000",
                          "agent.target_model_update=500", "env.id=CartPole-v0", "seed=7"])
    assert cfg.agent.model.units == 64 and cfg.agent.memory.limit == 10000
    assert cfg.agent.target_model_update == 500.0 and cfg.env.id == "CartPole-v0"
    assert cfg.seed == 7
    flat = flatten(cfg)
    assert flat["agent.model.units"] == 64 and flat["env.id"] == "CartPole-v0"


BAD = [
    (["agent.foo=1"], "agent.foo"),
    (["agent.model.units=abc"], "agent.model.units"),
    (["agent.model.units=1.5"], "agent.model.units"),
    (["agent.model.units=0"], "agent.model.units"),
    (["agent.model.activation=sin"], "agent.model.activation"),
    (["agent.memory.limit=0"], "agent.memory.limit"),
    (["agent.memory.limit=-5"], "agent.memory.limit"),
    (["agent.memory.window_length=0"], "agent.memory.window_length"),
    (["agent.policy.value_min=0.9", "agent.policy.value_max=0.5"], "agent.policy.value_min"),
    (["agent.policy.value_max=1.5"], "agent.policy.value_max"),
    (["agent.policy.nb_steps=0"], "agent.policy.nb_steps"),
    (["agent.target_model_update=-0.01"], "agent.target_model_update"),
    (["agent.gamma=1.1"], "agent.gamma"),
    (["agent.lr=0"], "agent.lr"),
    (["agent.batch_size=0"], "agent.batch_size"),
    (["agent.impl=torch"], "agent.impl"),
    (["env.id=NoSuchEnv-v0"], "env.id"),
    (["env.id=Pendulum-v1"], "env.id"),  # continuous action space
    (["train.nb_steps=0"], "train.nb_steps"),
    (["train.nb_steps=-3"], "train.nb_steps"),
    (["train.eval_episodes=0"], "train.eval_episodes"),
    (["seed=-1"], "seed"),
    (["nonsense=1"], "nonsense"),
    (["+agent.some_new_key=3"], "+agent.some_new_key=3: agent.some_new_key is not a key"),
    (["++train.other=1"], "++train.other=1: train.other is not a key"),
    (["+newtop=1"], "+newtop=1: newtop is not a key"),
    (["agent.nb_steps_warmup=0"], "agent.nb_steps_warmup=0: must be >= 1"),
    (["agent.memory.window_length=3", "agent.nb_steps_warmup=2"],
     "agent.nb_steps_warmup=2: must be >= 3"),
    # Atari (env=atari) and the conv network
    (["env.preprocessing=rgb"], "env.preprocessing=rgb: must be one of none, atari"),
    (["env=atari", "env.id=CartPole-v1"], "env.id=CartPole-v1: env.preprocessing=atari needs"),
    (["env.id=ALE/Pong-v5"], "env.id=ALE/Pong-v5: an Atari env needs env.preprocessing=atari"),
    (["env=atari", "env.atari.frame_skip=0"], "env.atari.frame_skip=0: must be >= 1"),
    (["env=atari", "env.atari.noop_max=-1"], "env.atari.noop_max=-1: must be >= 0"),
    (["env=atari", "env.atari.screen_size=4"], "env.atari.screen_size=4: must be >= 8"),
    (["env=atari", "env.atari.screen_size=30"], "agent.model.kernel_size=[8, 4, 3]: leaves no"),
    (["agent.model=conv"], "agent.model.filters=[32, 64, 64]: a Conv2D stack needs image"),
    (["env=atari", "agent.model.kernel_size=[8,4]"], "agent.model.kernel_size=[8, 4]: needs one"),
    (["env=atari", "agent.model.strides=[4,0,1]"], "agent.model.strides=[4, 0, 1]: must all"),
    (["env=atari", "env.atari.frame_skip=two"], "env.atari.frame_skip: Value 'two'"),
]


@pytest.mark.parametrize(("overrides", "key"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_input_names_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(compose_config(overrides))
    message = str(info.value)
    assert message.startswith(key) and "\n" not in message


def test_cli_bad_input_is_one_line_before_tensorflow(workdir) -> None:
    """The CLI exits 2 with one line, creates no MLflow run, never imports TensorFlow."""
    probe = textwrap.dedent("""
        import sys
        from sweep.__main__ import main
        code = main(["agent.memory.limit=0"])
        assert "tensorflow" not in sys.modules, "TensorFlow was imported"
        sys.exit(code)
    """)
    proc = run_python("-c", probe, cwd=workdir)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: agent.memory.limit=0: must be >= 1"]
    assert not (workdir / "mlflow.db").exists() and not (workdir / "mlruns").exists()


def test_cli_unknown_key(workdir) -> None:
    proc = run_cli("agent.nb_steps_warmpu=5", cwd=workdir)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "agent.nb_steps_warmpu" in lines[0]


def test_passwords_are_masked() -> None:
    assert mask_url("postgresql://bob:s3cret@db:5432/x") == "postgresql://bob:***@db:5432/x"
    cfg = compose_config(["tracking.uri=http://alice:hunter2@mlflow:5000"])
    assert "hunter2" not in str(flatten(cfg))


def test_a_config_saved_before_the_vectorised_sampler_keeps_keras_rl_draws(tmp_path) -> None:
    from omegaconf import OmegaConf

    from rltrain.config import load_saved, to_yaml

    cfg = compose_config([])
    now = tmp_path / "now.yaml"
    now.write_text(to_yaml(cfg))
    assert load_saved(now).agent.memory.sampling == "fast"
    data = OmegaConf.to_container(cfg)
    del data["agent"]["memory"]["sampling"]  # as a run of the previous release saved it
    old = tmp_path / "old.yaml"
    old.write_text(OmegaConf.to_yaml(OmegaConf.create(data)))
    assert load_saved(old).agent.memory.sampling == "keras-rl"
