"""Importing this package registers ``Corridor-v0`` with gymnasium, as env packages do.

    gymnasium.make("corridor_env:Corridor-v0", length=8, observation="dict")
"""

import gymnasium

from corridor_env.corridor import CorridorEnv

__all__ = ["CorridorEnv"]

# No max_episode_steps: an agent that walks into the wall never ends its episode. Give it a
# time limit where it is used (gymnasium.wrappers.TimeLimit), as with many envs of one's own.
gymnasium.register(id="Corridor-v0", entry_point="corridor_env.corridor:CorridorEnv")
