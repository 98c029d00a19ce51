"""Watch a trained agent: play evaluation episodes off-screen and save them as a GIF."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from rltrain import compat
from rltrain.envs import input_scale, make_env
from rltrain.train import TEST_SEED_OFFSET, seed_everything


def record_gif(cfg: DictConfig, weights: Path, path: Path, episodes: int = 1,
               fps: int | None = None, width: int = 300) -> tuple[Path, list[float], int]:
    """Load ``weights`` into the agent ``cfg`` describes, play ``episodes`` test episodes
    with ``rgb_array`` rendering and write them to ``path``; return (path, rewards, frames).

    The GIF shows what ``render()`` gives: the game's own colour frames (Atari: one per
    agent step, i.e. every ``frame_skip``-th frame), not the agent's preprocessed input.
    ``fps`` None: 30, or for Atari the game's own speed (60 / ``frame_skip``).
    """
    if fps is None:
        fps = max(1, 60 // cfg.env.atari.frame_skip) if cfg.env.preprocessing == "atari" else 30
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders with no display
    from PIL import Image

    from rltrain.agent import build_agent
    from rltrain.loop import run_episodes

    keras = compat.load(threads=cfg.train.threads)
    keras.backend.clear_session()
    seed_everything(cfg.seed)
    env = make_env(cfg.env, cfg.seed + TEST_SEED_OFFSET, render=True)
    try:
        agent = build_agent(cfg.agent, env.observation_space.shape, int(env.action_space.n),
                            input_scale=input_scale(env.observation_space))
        agent.load_weights(str(weights))
        frames: list[np.ndarray] = []
        rewards = run_episodes(agent, env, episodes, cfg.seed + TEST_SEED_OFFSET, frames=frames)
    finally:
        env.close()
    images = [Image.fromarray(frame) for frame in frames]
    height = round(images[0].height * width / images[0].width)
    images = [image.resize((width, height)) for image in images]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps),
                   loop=0, optimize=True)
    return path, rewards, len(images)
