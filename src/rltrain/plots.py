"""Pictures people would rather look at than tables: the learning curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    if episode_rewards or evaluations:
        ax.legend(loc="lower right")
    else:  # a budget shorter than one episode (an Atari smoke run)
        ax.text(0.5, 0.5, "no episode finished yet", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def seed_curves(curves: list[list[tuple[int, float]]], path: Path, title: str = "") -> Path:
    """Every seed's evaluation curve, their mean and a +-1 standard deviation band."""
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    grid = np.array(sorted({step for curve in curves for step, _ in curve}))
    on_grid = []
    for curve in curves:
        steps, values = zip(*curve, strict=True)
        ax.plot(steps, values, color="tab:blue", alpha=0.35, lw=1)
        on_grid.append(np.interp(grid, steps, values))
    mean, std = np.mean(on_grid, axis=0), np.std(on_grid, axis=0)
    ax.fill_between(grid, mean - std, mean + std, color="tab:orange", alpha=0.25,
                    label="mean +- 1 std")
    ax.plot(grid, mean, color="tab:orange", lw=2.2, label=f"mean of {len(curves)} seeds")
    ax.set_xlabel("environment step")
    ax.set_ylabel("greedy evaluation reward")
    title = title or "learning curves over seeds"
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, metadata={"Title": title})  # the PNG's own text: readable by tools
    plt.close(fig)
    return path


def leaders_plot(results: dict[str, list[float]], path: Path, threshold: float) -> Path:
    """Each leader's fresh-seed results as points, with the mean and its 95% t-interval."""
    from scipy import stats

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100, layout="constrained")
    for i, values in enumerate(results.values()):
        x = np.full(len(values), i) + np.linspace(-0.12, 0.12, len(values))
        ax.scatter(x, values, color="tab:blue", alpha=0.6, s=22, zorder=3)
        mean = float(np.mean(values))
        half = (stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1)
                / np.sqrt(len(values))) if len(values) > 1 else 0.0
        ax.errorbar(i + 0.3, mean, yerr=half, fmt="o", color="tab:orange", capsize=5, zorder=4,
                    label="mean and 95% interval" if i == 0 else None)
    if np.isfinite(threshold):
        ax.axhline(threshold, color="tab:green", ls="--", lw=1, label=f"solved ({threshold:g})")
    ax.set_xticks(range(len(results)), list(results))
    ax.set_ylabel("delivered agent's test reward")
    ax.set_title("the leaders retrained on fresh seeds")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.savefig(path)
    plt.close(fig)
    return path


def drop_crowded_legend(figure: Any, max_entries: int = 12) -> None:
    """Remove legends of more than ``max_entries`` lines (Optuna's intermediate values plot
    has one per trial): taller than the figure, tight layout cannot place them and warns
    "Tight layout not applied", and 40 entries in 10 recycled colours tell nothing apart."""
    for ax in figure.axes:
        legend = ax.get_legend()
        if legend is not None and len(legend.get_texts()) > max_entries:
            legend.remove()
            ax.set_title(f"{ax.get_title()} ({len(legend.get_texts())} trials)")
