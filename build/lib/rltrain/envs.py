"""The env factory: every env the project plays (training, evaluation, test, watch, the
registered model) is made here, from the ``env`` config.

A user's env: ``env.id`` may be gymnasium's ``module:EnvName-vN`` (the module is imported
first, and registers the env), ``env.imports`` lists more modules to import before the env
is made (every process that makes one imports them: spawned workers do not inherit
imports), ``env.kwargs`` goes to ``gymnasium.make`` and ``env.wrappers`` (Hydra's
instantiate form, ``{_target_: gymnasium.wrappers.TimeLimit, max_episode_steps: 1000}``)
wrap the env in order, the same for training, evaluation, test, watch and the registered
model.

``env.preprocessing=atari`` gives the ALE env made with ``frameskip=1`` (ALE v5 keeps its
sticky actions, p=0.25) inside gymnasium's ``AtariPreprocessing``: frame skip with the
last two frames max-pooled, up to ``noop_max`` no-ops at reset, 84x84 grey uint8 frames.
The training env also clips rewards to their sign; the raw game score of each step stays
in ``info[RAW_REWARD]``, which the training loop reports. No TensorFlow here.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

import gymnasium as gym
import numpy as np
from omegaconf import DictConfig, OmegaConf

RAW_REWARD = "raw_reward"  # info key of the unclipped reward on a reward-clipping env
ALE_ENTRY_POINT = "ale_py.env:AtariEnv"


def split_id(env_id: str) -> tuple[str, str]:
    """``("module", "EnvName-vN")`` of gymnasium's ``module:EnvName-vN``; ``("", id)`` else."""
    module, sep, name = env_id.rpartition(":")
    return (module, name) if sep else ("", env_id)


def env_modules(env: Any) -> list[str]:
    """The modules to import before ``env`` can be made: ``env.imports``, then the module of
    a ``module:EnvName-vN`` id."""
    module = split_id(env.id)[0]
    return [*env.get("imports", []), *([module] if module else [])]


def import_modules(modules: Iterable[str]) -> None:
    """Import each module (an env package registers its envs on import)."""
    for module in modules:
        importlib.import_module(module)


def spec(env: Any) -> Any:
    """The registered ``EnvSpec`` of ``env.id``, its modules imported first."""
    import_modules(env_modules(env))
    plain = split_id(env.id)[1]
    register_ale(plain)
    return gym.spec(plain)


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


class ClipReward(gym.Wrapper):
    """``step`` returns the reward's sign (-1, 0, 1), as DQN trains on Atari, and keeps
    the raw reward in ``info[RAW_REWARD]``."""

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, clip_reward(reward), terminated, truncated, {**info, RAW_REWARD: reward}


def clip_reward(reward: float) -> float:
    """DQN's reward clipping: the sign of the reward."""
    return float(np.sign(reward))


def make_env(env: DictConfig, seed: int, training: bool = False, render: bool = False,
             wrappers: bool = True) -> Any:
    """A gymnasium env as ``env`` describes, its action space seeded with ``seed`` (its
    dynamics are seeded on reset). ``training``: the env the agent learns from (Atari:
    clipped rewards). ``render``: ``render()`` returns the game's own RGB frames.
    ``wrappers=False``: without ``env.wrappers`` (config validation applies them one by one)."""
    render_mode = "rgb_array" if render else None
    import_modules(env_modules(env))
    env_id = split_id(env.id)[1]
    register_ale(env_id)
    kwargs = plain(env.get("kwargs", {}))
    if env.preprocessing == "atari":
        a = env.atari
        game = gym.make(env_id, frameskip=1, render_mode=render_mode,
                        max_num_frames_per_episode=a.max_num_frames_per_episode,
                        disable_env_checker=True, **kwargs)  # validation already made one
        made = gym.wrappers.AtariPreprocessing(
            game, noop_max=a.noop_max, frame_skip=a.frame_skip, screen_size=a.screen_size,
            terminal_on_life_loss=a.terminal_on_life_loss, grayscale_obs=True, scale_obs=False)
    else:
        made = gym.make(env_id, render_mode=render_mode, disable_env_checker=True, **kwargs)
    if wrappers:
        made = wrap(made, env.get("wrappers", []))
    if env.preprocessing == "atari" and training and env.atari.clip_rewards:
        made = ClipReward(made)
    made.action_space.seed(seed)
    return made


def plain(node: Any) -> Any:
    """A config node as plain dicts and lists (anything else as it is)."""
    return OmegaConf.to_container(node) if OmegaConf.is_config(node) else node


def wrap(made: Any, wrappers: Iterable[Any]) -> Any:
    """``made`` inside each wrapper in order: ``{_target_: CLASS, **arguments}``, the env
    passed first (Hydra's instantiate)."""
    from hydra.utils import instantiate

    for spec_ in wrappers:
        made = instantiate(spec_, made, _convert_="all")
    return made


def input_scale(observation_space: Any) -> float:
    """What the model multiplies observations by: 1/255 for uint8 frames (the replay
    memory keeps them uint8), 1 for anything else."""
    return 1 / 255 if np.dtype(observation_space.dtype) == np.uint8 else 1.0
