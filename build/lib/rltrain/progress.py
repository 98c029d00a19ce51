"""A console progress bar for a training run (a keras-rl2 style callback)."""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm


class ProgressBar:
    """Steps done, episodes, last episode reward and last evaluation, refreshed ~4x a second."""

    def __init__(self, nb_steps: int, description: str = "train") -> None:
        self.bar = tqdm(total=nb_steps, desc=description, unit="step", file=sys.stderr,
                        dynamic_ncols=True, mininterval=0.25)
        self.pending = 0
        self.episodes = 0
        self.last_reward = float("nan")
        self.last_eval = float("nan")
        self._next = time.monotonic()

    def on_step_end(self, step: int, logs: dict[str, Any]) -> None:
        self.pending += 1
        if self.pending >= 256 and time.monotonic() >= self._next:
            self._refresh()

    def on_episode_end(self, episode: int, logs: dict[str, Any]) -> None:
        self.episodes += 1
        self.last_reward = float(logs["episode_reward"])

    def on_evaluation_end(self, step: int, logs: dict[str, Any]) -> None:
        self.last_eval = float(logs["mean_reward"])
        self._refresh()

    def on_train_end(self, logs: dict[str, Any]) -> None:
        self._refresh()
        self.bar.close()

    def _refresh(self) -> None:
        self.bar.update(self.pending)
        self.pending = 0
        self.bar.set_postfix(episodes=self.episodes, reward=f"{self.last_reward:.0f}",
                             eval=f"{self.last_eval:.1f}", refresh=False)
        self._next = time.monotonic() + 0.25
