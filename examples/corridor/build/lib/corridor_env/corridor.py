"""A corridor of ``length`` cells: start in the first, walk to the last.

Actions: 0 left, 1 right. Reward: -0.01 a step, +1 on reaching the goal (the episode ends
there). The best return is ``1 - 0.01 * (length - 2)``. Observations: ``"box"`` the position
scaled to [0, 1]; ``"dict"`` a Dict of the cell (Discrete) and the distance to the goal (Box),
which a DQN takes through ``gymnasium.wrappers.FlattenObservation``; ``"rgb"`` the picture
``render`` draws (uint8, 16 x 16*length x 3).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class CorridorEnv(gym.Env):
    """Walk right to the goal; no time limit of its own."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(self, length: int = 8, observation: str = "box",
                 render_mode: str | None = None) -> None:
        if length < 2:
            raise ValueError(f"length={length}: must be >= 2")
        if observation not in ("box", "dict", "rgb"):
            raise ValueError(f"observation={observation!r}: must be 'box', 'dict' or 'rgb'")
        self.length, self.observation, self.render_mode = length, observation, render_mode
        self.action_space = gym.spaces.Discrete(2)
        distance = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.observation_space = {
            "box": distance,
            "dict": gym.spaces.Dict({"cell": gym.spaces.Discrete(length), "distance": distance}),
            "rgb": gym.spaces.Box(0, 255, shape=(16, 16 * length, 3), dtype=np.uint8),
        }[observation]
        self.cell = 0

    def _obs(self) -> Any:
        distance = np.array([(self.length - 1 - self.cell) / (self.length - 1)], np.float32)
        if self.observation == "rgb":
            return self.render()
        return distance if self.observation == "box" else {"cell": self.cell,
                                                           "distance": distance}

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.cell = 0
        return self._obs(), {}

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.cell = min(max(self.cell + (1 if action == 1 else -1), 0), self.length - 1)
        goal = self.cell == self.length - 1
        return self._obs(), 1.0 if goal else -0.01, goal, False, {}

    def render(self) -> np.ndarray:
        """The corridor as an RGB strip: the agent red, the goal green."""
        frame = np.full((16, 16 * self.length, 3), 230, np.uint8)
        frame[:, 16 * (self.length - 1):] = (60, 180, 75)
        frame[4:12, 16 * self.cell + 4:16 * self.cell + 12] = (220, 40, 40)
        return frame
