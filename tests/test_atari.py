"""Atari (env=atari): the env factory, the conv model, config composition and validation,
tiny real training runs of both agents on ALE/Pong-v5, and the watch GIF.

Episodes are capped at 240 frames with ``env.atari.max_num_frames_per_episode`` (a Pong
episode is otherwise 800+ agent steps), so evaluations, tests and the GIF stay short.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from rltrain.config import compose_config, validate
from rltrain.envs import RAW_REWARD, clip_reward, make_env
from tests.conftest import run_python

SHORT = "env.atari.max_num_frames_per_episode=240"  # < 60 agent steps per episode
TINY_ATARI = ["env=atari", "train.nb_steps=150", "agent.nb_steps_warmup=50",
              "agent.memory.limit=1000", "agent.policy.nb_steps=200", "train.eval_interval=100",
              "train.eval_episodes=1", "train.test_episodes=1", "train.checkpoint_interval=0",
              "train.log_interval=1", "train.progress=false", SHORT]


def test_env_factory_clips_training_rewards_only() -> None:
    """Space Invaders scores 5-30 a hit: the training env gives the sign, with the raw
    score in info; the evaluation env gives the raw score. Frames are 84x84 uint8, and
    rendering gives the game's colour frames."""
    cfg = compose_config(["env=atari", "env.id=ALE/SpaceInvaders-v5"])
    validate(cfg)
    training, plain = make_env(cfg.env, 0, training=True), make_env(cfg.env, 0, render=True)
    try:
        obs, _ = training.reset(seed=3)
        plain.reset(seed=3)
        assert obs.shape == (84, 84) and obs.dtype == np.uint8
        clipped, raw, same_env_raw = [], [], []
        for _ in range(300):
            action = training.action_space.sample()
            _, reward, *_, info = training.step(action)
            clipped.append(reward)
            raw.append(info[RAW_REWARD])
            _, reward, *_, info = plain.step(action)
            same_env_raw.append(reward)
            assert RAW_REWARD not in info
        frame = plain.render()
    finally:
        training.close()
        plain.close()
    assert max(raw) > 1, "no hit scored: the test needs a reward above 1"
    assert clipped == [float(np.sign(r)) for r in raw] and set(clipped) <= {0.0, 1.0}
    assert raw == same_env_raw  # same seed, same actions: the same game
    assert frame.shape == (210, 160, 3) and _is_colour(frame)
    assert [clip_reward(r) for r in (-7.0, -1.0, 0.0, 0.5, 30.0)] == [-1, -1, 0, 1, 1]


def _is_colour(image: np.ndarray) -> bool:
    """Some pixel has different red, green and blue values."""
    rgb = image.astype(np.int16)
    return bool((np.abs(rgb[..., 0] - rgb[..., 1]) + np.abs(rgb[..., 1] - rgb[..., 2])).max())


def test_model_group_composes_either_way() -> None:
    """agent.model=conv is rewritten to Hydra's agent/model=conv; env=atari picks conv,
    and the command line can still pick mlp or set the model's keys."""
    a = OmegaConf.to_container(compose_config(["agent.model=conv"]).agent.model)
    b = OmegaConf.to_container(compose_config(["agent/model=conv"]).agent.model)
    assert a == b == {"filters": [32, 64, 64], "kernel_size": [8, 4, 3], "strides": [4, 2, 1],
                      "units": 512, "layers": 1, "activation": "relu"}
    atari = compose_config(["env=atari"])
    assert list(atari.agent.model.filters) == [32, 64, 64]
    assert atari.agent.memory.window_length == 4 and atari.env.id == "ALE/Pong-v5"
    assert atari.tracking.experiment == "keras-rl-atari"
    mlp = compose_config(["env=atari", "agent.model=mlp", "agent.model.units=64"]).agent.model
    assert list(mlp.filters) == [] and mlp.units == 64
    assert compose_config(["agent.model.units=64"]).agent.model.units == 64


def test_atari_search_space_plans() -> None:
    """conf/search/atari.yaml: every choice and bound validates on env=atari; the model's
    keys stay searchable from the group."""
    from sweep.engine.settings import key_kind, plan

    planned = plan(["env=atari", "search=atari"])
    assert {"agent.lr", "agent.target_model_update", "agent.policy.nb_steps"} <= set(
        planned.space.dimensions)
    assert planned.experiment == "keras-rl-atari" and planned.nb_steps == 500000
    base = compose_config(["env=atari"])
    assert key_kind(base, set(), "agent.model.units") == "int"


def test_cli_bad_atari_config_before_tensorflow(workdir: Path) -> None:
    probe = textwrap.dedent("""
        import sys
        from sweep.__main__ import main
        code = main(["train", "env=atari", "env.id=CartPole-v1"])
        assert "tensorflow" not in sys.modules, "TensorFlow was imported"
        sys.exit(code)
    """)
    proc = run_python("-c", probe, cwd=workdir)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: env.id=CartPole-v1: env.preprocessing=atari needs an Atari env "
        "(ALE/<Game>-v5, e.g. ALE/Pong-v5)"]


def test_conv_model_is_nature_dqn() -> None:
    """(4, 84, 84) uint8 frames in, scaled by 1/255 inside, 3 convs to 7x7x64, Dense 512."""
    from rltrain import compat
    from rltrain.agent import build_model

    keras = compat.load()
    cfg = compose_config(["env=atari"])
    model = build_model(cfg.agent, (84, 84), 6, input_scale=1 / 255)
    try:
        assert tuple(model.input.shape) == (None, 4, 84, 84)
        assert tuple(model.output.shape) == (None, 6)
        convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
        assert [tuple(c.output.shape[1:]) for c in convs] == [(20, 20, 32), (9, 9, 64),
                                                              (7, 7, 64)]
        [scale] = [layer for layer in model.layers if isinstance(layer, keras.layers.Rescaling)]
        assert scale.scale == pytest.approx(1 / 255)
        assert model.count_params() == 1_687_206  # Mnih et al. 2015 with 6 actions
    finally:
        keras.backend.clear_session()


class _StepRecorder:
    """A callback that keeps every step's reported reward and each episode's."""

    def __init__(self) -> None:
        self.steps: list[tuple[float, float]] = []  # (logs["reward"], info[RAW_REWARD])
        self.episodes: list[float] = []
        self.ends: list[int] = []

    def on_step_end(self, step: int, logs: dict[str, Any]) -> None:
        self.steps.append((float(logs["reward"]), float(logs["info"][RAW_REWARD])))

    def on_episode_end(self, episode: int, logs: dict[str, Any]) -> None:
        self.episodes.append(logs["episode_reward"])
        self.ends.append(len(self.steps))


def test_training_loop_learns_clipped_and_reports_raw_scores() -> None:
    """300 random steps of Space Invaders through the training loop: the replay memory
    holds clipped rewards, the steps' logs and the episode rewards the raw scores."""
    from rltrain import compat
    from rltrain.agent import build_agent
    from rltrain.envs import input_scale
    from rltrain.loop import Callbacks, fit

    keras = compat.load()
    cfg = compose_config(["env=atari", "env.id=ALE/SpaceInvaders-v5", "agent.model=mlp",
                          "agent.nb_steps_warmup=1000", "agent.policy.value_min=1.0",
                          "agent.memory.limit=1000", "env.atari.max_num_frames_per_episode=400"])
    validate(cfg)
    env = make_env(cfg.env, 0, training=True)
    try:
        agent = build_agent(cfg.agent, env.observation_space.shape, int(env.action_space.n),
                            input_scale=input_scale(env.observation_space))
        recorder = _StepRecorder()
        fit(agent, env, 300, Callbacks([recorder], agent, env, {}), seed=0)
    finally:
        env.close()
        keras.backend.clear_session()
    reported = [r for r, _ in recorder.steps]
    assert reported == [raw for _, raw in recorder.steps] and max(reported) > 1
    starts = [0, *recorder.ends[:-1]]
    assert len(recorder.episodes) >= 2
    assert recorder.episodes == [sum(reported[a:b]) for a, b in zip(starts, recorder.ends,
                                                                     strict=True)]
    learned = agent.memory.rewards[:agent.memory.nb_entries]
    assert set(learned.tolist()) <= {-1.0, 0.0, 1.0} and learned.max() == 1.0


class _Grab:
    """A callback that keeps the agent it is given (keras-rl2's set_model)."""

    agent: Any = None

    def set_model(self, agent: Any) -> None:
        self.agent = agent


@pytest.fixture(scope="module")
def atari_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both agents trained 150 steps on ALE/Pong-v5 in one MLflow store."""
    from rltrain.run import tracked_train

    folder = tmp_path_factory.mktemp("atari")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    runs: dict[str, Any] = {"uri": uri, "folder": folder}
    for impl in ("fast", "keras-rl"):
        grab = _Grab()
        cfg = compose_config([*TINY_ATARI, f"agent.impl={impl}", f"tracking.uri={uri}"])
        run_id, result = tracked_train(cfg, callbacks=[grab], folder=folder / impl)
        runs[impl] = (cfg, run_id, result, grab.agent)
    return runs


@pytest.mark.parametrize("impl", ["fast", "keras-rl"])
def test_both_agents_train_on_pong(atari_runs: dict[str, Any], impl: str) -> None:
    cfg, run_id, result, agent = atari_runs[impl]
    client = MlflowClient(tracking_uri=atari_runs["uri"])
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.experiment_id
    assert client.get_experiment(run.info.experiment_id).name == "keras-rl-atari"
    assert run.data.params["env.id"] == "ALE/Pong-v5"
    assert run.data.params["agent.model.filters"] == "[32, 64, 64]"
    assert result.nb_steps == 150 and len(result.episode_rewards) >= 2  # capped episodes
    for name in ("episode_reward", "loss", "mean_q", "eval/mean_reward"):
        assert client.get_metric_history(run_id, name), name
    assert math.isfinite(run.data.metrics["test/mean_reward"])
    files = {item.path for item in client.list_artifacts(run_id)}
    assert {"config.yaml", "dqn_weights.h5", "dqn_log.json"} <= files
    # Pong's raw score per point is -1/+1 either way; that reported rewards are the raw
    # ones (not the clipped) is tested on Space Invaders above.
    assert all(-21 <= r <= 21 for r in result.episode_rewards)
    if impl == "fast":
        assert agent.memory.observations.dtype == np.uint8
        assert agent.memory.observations.shape == (1000, 84, 84)
    else:
        assert agent.memory.observations[0].dtype == np.uint8


def test_watch_gif_shows_colour_game_frames(atari_runs: dict[str, Any]) -> None:
    from PIL import Image

    from rltrain.watch import record_gif

    cfg, _, result, _ = atari_runs["fast"]
    path, rewards, frames = record_gif(cfg, result.weights_path,
                                       atari_runs["folder"] / "agent.gif")
    # The reset frame, then one per agent step: (240 - up to 30 no-op frames) / 4.
    assert 53 <= frames <= 61 and len(rewards) == 1
    with Image.open(path) as gif:
        # Pillow merges identical consecutive frames (a longer duration) into one.
        assert 40 <= gif.n_frames <= frames and gif.size == (300, 394)  # 160x210, scaled
        frames = gif.n_frames
        gif.seek(frames // 2)
        assert _is_colour(np.asarray(gif.convert("RGB")))
