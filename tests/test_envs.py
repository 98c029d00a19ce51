"""Env groups beyond CartPole: each trains (fast and stock agents), and a sweep of a
non-CartPole group picks its own search space and study name. One process, one TF import."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from rltrain.config import DEFAULT_CONF_DIR, ConfigError, compose_config, reward_threshold
from rltrain.run import tracked_train
from sweep.__main__ import main
from sweep.engine import invocation
from sweep.engine.recorded import recorded_config, resolve
from sweep.engine.settings import plan
from sweep.present import report

ENVS = {"cartpole": ("CartPole-v1", 475.0), "acrobot": ("Acrobot-v1", -100.0),
        "mountaincar": ("MountainCar-v0", -110.0), "lunarlander": ("LunarLander-v3", 200.0)}
TINY = ["train.nb_steps=600",  # a random Acrobot episode lasts 500 steps: one ends
        "train.eval_interval=0", "train.test_episodes=1",
        "train.checkpoint_interval=0", "train.progress=false", "agent.memory.limit=500",
        "agent.nb_steps_warmup=50", "agent.policy.nb_steps=200", "agent.batch_size=16"]


def test_every_env_group_has_a_search_space_and_its_own_experiment() -> None:
    groups = {p.stem for p in (DEFAULT_CONF_DIR / "env").glob("*.yaml")}
    assert set(ENVS) <= groups
    for group, (env_id, threshold) in ENVS.items():
        cfg = compose_config([f"env={group}"])
        assert cfg.env.id == env_id and reward_threshold(cfg.env) == threshold
        assert cfg.tracking.experiment == f"keras-rl-{group}"
        p = plan([f"env={group}"])
        assert (p.search_name, p.settings.study_name) == (group, f"dqn-{group}")
        assert p.experiment == f"keras-rl-{group}" and p.space.dimensions


def test_env_cartpole_is_the_default_config() -> None:
    assert compose_config(["env=cartpole"]) == compose_config([])
    assert plan(["env=cartpole"]).fixed == plan([]).fixed == plan(["search=default"]).fixed


def test_search_and_study_name_follow_the_env() -> None:
    by_search = plan(["search=acrobot"])  # the space names its env group
    assert by_search.settings.study_name == "dqn-acrobot" and "env=acrobot" in by_search.fixed
    assert plan(["env=acrobot", "search=default"]).search_name == "acrobot"
    mine = plan(["env=acrobot", "sweep.study_name=mine"])
    assert mine.settings.study_name == "mine" and mine.folder == Path("multirun/mine")
    crossed = plan(["env=mountaincar", "search=cartpole"])  # an explicit search= wins
    assert (crossed.search_name, crossed.settings.study_name) == ("cartpole", "dqn-mountaincar")
    assert plan(["env=acrobot"]).fixed != plan([]).fixed  # check_same keeps them apart


def test_an_env_group_without_a_search_space_is_one_clear_error(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    for path in DEFAULT_CONF_DIR.rglob("*.yaml"):
        (conf / path.relative_to(DEFAULT_CONF_DIR)).parent.mkdir(parents=True, exist_ok=True)
        (conf / path.relative_to(DEFAULT_CONF_DIR)).write_text(path.read_text())
    (conf / "search" / "acrobot.yaml").unlink()
    with pytest.raises(ConfigError, match=r"^search=default: env=acrobot has no default search "
                                          r"space \(conf/search/acrobot.yaml\)"):
        plan(["env=acrobot"], conf)


@pytest.mark.parametrize("impl", ["fast", "keras-rl"])
@pytest.mark.parametrize("group", list(ENVS))
def test_env_group_trains(group: str, impl: str, tracking_uri: str,
                          client: MlflowClient) -> None:
    stock = ["agent.gradient_steps=1", "agent.bootstrap_on_truncation=false"]  # fast-only keys
    cfg = compose_config([f"env={group}", f"agent.impl={impl}", *TINY,
                          *(stock if impl == "keras-rl" else []), f"tracking.uri={tracking_uri}"])
    run_id, result = tracked_train(cfg)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == f"keras-rl-{group}"
    assert run.data.params["env.id"] == ENVS[group][0]
    assert run.data.params["agent.impl"] == impl
    assert result.nb_steps == 600 and result.episode_rewards and len(result.test_rewards) == 1
    assert run.data.metrics["test/mean_reward"] == pytest.approx(result.test_mean_reward)
    losses = client.get_metric_history(run_id, "loss")
    assert losses and all(math.isfinite(m.value) for m in losses)  # it trained
    rewards = client.get_metric_history(run_id, "episode_reward")
    assert [m.value for m in rewards] == result.episode_rewards


def test_acrobot_sweep_uses_its_space_and_study(tracking_uri: str, client: MlflowClient,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    args = ["env=acrobot", "sweep.n_trials=2", "sweep.n_jobs=1", "sweep.seeds_per_trial=1",
            "sweep.recheck_top_k=0", "sweep.register_best=false", "sweep.pruner=none",
            "train.nb_steps=300", "train.eval_interval=150", "train.eval_episodes=1",
            "train.test_episodes=1", "agent.nb_steps_warmup=50", "agent.policy.nb_steps=200",
            "agent.memory.limit=500", "train.progress=false", f"tracking.uri={tracking_uri}"]
    outcome = invocation.run(plan(args), report)
    assert (outcome.exit_code, outcome.new_trials) == (0, 2)

    storage = JournalStorage(JournalFileBackend("multirun/dqn-acrobot/study.log"))
    study = optuna.load_study(study_name="dqn-acrobot", storage=storage)
    fixed_here = {a.split("=", 1)[0] for a in args}  # the command line fixes these
    searched = set(OmegaConf.load(DEFAULT_CONF_DIR / "search" / "acrobot.yaml")) - {
        "env", "agent.impl"} - fixed_here
    assert {"agent.lr", "agent.target_model_update", "agent.train_interval"} <= searched
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    for trial in study.trials:
        assert set(trial.params) == searched
        run = client.get_run(trial.user_attrs["run_id"])
        assert run.data.params["env.id"] == "Acrobot-v1"
        assert run.data.params["agent.model.units"] == str(trial.params["agent.model.units"])
        assert client.get_experiment(run.info.experiment_id).name == "keras-rl-acrobot"

    capsys.readouterr()
    assert main(["best", "env=acrobot", "--json"]) == 0  # the multirun's line finds its study
    best = json.loads(capsys.readouterr().out)
    assert best["study"] == "dqn-acrobot" and best["trial"] == study.best_trial.number
    assert "env=acrobot" in best["overrides"]
    assert main(["best"]) == 2  # dqn-cartpole: no such study here
    assert "sweep.study_name=dqn-cartpole: no study" in capsys.readouterr().err

    run_id, here = resolve("best", ["env=acrobot", f"tracking.uri={tracking_uri}"])
    assert run_id == best["run_id"]
    cfg = recorded_config(run_id, here, Path("recorded"))
    assert cfg.env.id == "Acrobot-v1"  # retrained where it was: its own experiment
    assert cfg.tracking.experiment == "keras-rl-acrobot"
