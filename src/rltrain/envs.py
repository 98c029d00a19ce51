"""The env factory: every env the project plays (training, evaluation, test, watch, the
registered model) is made here, from the ``env`` config.

``env.preprocessing=atari`` gives the ALE env made with ``frameskip=1`` (ALE v5 keeps its
sticky actions, p=0.25) inside gymnasium's ``AtariPreprocessing``: frame skip with the
last two frames max-pooled, up to ``noop_max`` no-ops at reset, 84x84 grey uint8 frames.
The training env also clips rewards to their sign; the raw game score of each step stays
in ``info[RAW_REWARD]``, which the training loop reports. No TensorFlow here.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from omegaconf import DictConfig

RAW_REWARD = "raw_reward"  # info key of the unclipped reward on a reward-clipping env
ALE_ENTRY_POINT = "ale_py.env:AtariEnv"


def register_ale(env_id: str) -> None:
    """Register ale-py's envs with gymnasium when ``env_id`` is not known yet (gymnasium
    1.x no longer does it on import)."""
    if env_id in gym.envs.registry:
        return
    try:
        import ale_py
    except ImportError:  # then env.id is reported as not registered
        return
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner on every make
    gym.register_envs(ale_py)


def is_ale(env_id: str) -> bool:
    """An Atari env of ale-py (``ALE/Pong-v5``, also the older ``PongNoFrameskip-v4``)."""
    register_ale(env_id)
    return gym.spec(env_id).entry_point == ALE_ENTRY_POINT


class ClipReward(gym.Wrapper):
    """``step`` returns the reward's sign (-1, 0, 1), as DQN trains on Atari, and keeps
    the raw reward in ``info[RAW_REWARD]``."""

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, clip_reward(reward), terminated, truncated, {**info, RAW_REWARD: reward}


def clip_reward(reward: float) -> float:
    """DQN's reward clipping: the sign of the reward."""
    return float(np.sign(reward))


def make_env(env: DictConfig, seed: int, training: bool = False, render: bool = False) -> Any:
    """A gymnasium env as ``env`` describes, its action space seeded with ``seed`` (its
    dynamics are seeded on reset). ``training``: the env the agent learns from (Atari:
    clipped rewards). ``render``: ``render()`` returns the game's own RGB frames."""
    render_mode = "rgb_array" if render else None
    register_ale(env.id)
    if env.preprocessing == "atari":
        a = env.atari
        game = gym.make(env.id, frameskip=1, render_mode=render_mode,
                        max_num_frames_per_episode=a.max_num_frames_per_episode,
                        disable_env_checker=True)  # config validation already made one
        made = gym.wrappers.AtariPreprocessing(
            game, noop_max=a.noop_max, frame_skip=a.frame_skip, screen_size=a.screen_size,
            terminal_on_life_loss=a.terminal_on_life_loss, grayscale_obs=True, scale_obs=False)
        if training and a.clip_rewards:
            made = ClipReward(made)
    else:
        made = gym.make(env.id, render_mode=render_mode, disable_env_checker=True)
    made.action_space.seed(seed)
    return made


def input_scale(observation_space: Any) -> float:
    """What the model multiplies observations by: 1/255 for uint8 frames (the replay
    memory keeps them uint8), 1 for anything else."""
    return 1 / 255 if np.dtype(observation_space.dtype) == np.uint8 else 1.0
