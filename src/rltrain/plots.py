"""Pictures people would rather look at than tables: the learning curve."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # off-screen: runs on machines with no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def learning_curve(episode_end_steps: list[int], episode_rewards: list[float],
                   evaluations: list[tuple[int, float]], path: Path, title: str = "") -> Path:
    """Episode reward (and its rolling mean) and greedy evaluation reward against env steps."""
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    if episode_rewards:
        ax.plot(episode_end_steps, episode_rewards, color="tab:blue", alpha=0.3, lw=0.8,
                label="episode reward")
        window = min(20, len(episode_rewards))
        rolling = np.convolve(episode_rewards, np.ones(window) / window, mode="valid")
        ax.plot(episode_end_steps[window - 1:], rolling, color="tab:blue", lw=1.8,
                label=f"rolling mean ({window} episodes)")
    if evaluations:
        steps, means = zip(*evaluations, strict=True)
        ax.plot(steps, means, "o-", color="tab:orange", lw=1.5, label="greedy evaluation")
    ax.set_xlabel("environment step")
    ax.set_ylabel("reward")
    ax.set_title(title or "learning curve")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
