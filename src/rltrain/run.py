"""One tracked training run: output folder, MLflow run, training, artifacts."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from mlflow.entities import RunStatus
from omegaconf import DictConfig

from rltrain.config import flatten, mask_url, to_yaml, validate
from rltrain.plots import learning_curve
from rltrain.tracking import MetricsCallback, Tracker, tracked_run


def run_name(cfg: DictConfig) -> str:
    """``<env>-<impl>-s<seed>-<time>`` unless ``tracking.run_name`` is set."""
    stamp = datetime.now().strftime("%m%d-%H%M%S")
    return cfg.tracking.run_name or f"{cfg.env.id}-{cfg.agent.impl}-s{cfg.seed}-{stamp}"


def output_dir(cfg: DictConfig, root: Path = Path("outputs")) -> Path:
    """``cfg.output_dir``, or a new ``outputs/<date>/<time>`` folder as Hydra would make."""
    if cfg.output_dir:
        return Path(cfg.output_dir)
    now = datetime.now()
    base = root / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S")
    folder, n = base, 1
    while folder.exists():
        folder, n = base.with_name(f"{base.name}_{n}"), n + 1
    return folder


def tracked_train(cfg: DictConfig, *, overrides: Sequence[str] = (), callbacks: Sequence[Any] = (),
                  tags: Mapping[str, Any] | None = None, parent_run_id: str | None = None,
                  folder: Path | None = None) -> tuple[str, Any]:
    """Train ``cfg`` inside an MLflow run; return ``(run_id, TrainResult)``.

    The run gets the flattened config as params, per-episode metrics, evaluations, the
    test reward, and the run folder (config, JSON log, weights, learning curve) as
    artifacts. It ends FINISHED, KILLED with tag ``stopped`` when a callback stopped it
    early (a pruned trial), or FAILED with tag ``error``.
    """
    validate(cfg)  # before any run exists or TensorFlow is imported
    from rltrain.progress import ProgressBar
    from rltrain.train import train

    name = run_name(cfg)
    folder = folder or output_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(to_yaml(cfg))
    (folder / "overrides.yaml").write_text(
        "".join(f"- {mask_url(o)}\n" for o in overrides) or "[]\n")
    with tracked_run(cfg.tracking.uri, cfg.tracking.experiment, name,
                     tags=tags, parent_run_id=parent_run_id) as tracker:
        tracker.log_params(flatten(cfg))
        tracker.set_tags({"output_dir": str(folder.resolve())})
        extra: list[Any] = [MetricsCallback(tracker)]
        if cfg.train.progress:
            extra.append(ProgressBar(cfg.train.nb_steps, description=name))
        start = time.perf_counter()
        try:
            result = train(cfg, folder, [*extra, *callbacks])
        finally:
            tracker.log_artifacts(folder)  # whatever exists, even after a crash
        _log_result(tracker, name, result, folder, time.perf_counter() - start)
        if result.stopped:
            tracker.set_tags({"stopped": result.stopped})
            tracker.end(RunStatus.to_string(RunStatus.KILLED))
    return tracker.run_id, result


def _log_result(tracker: Tracker, name: str, result: Any, folder: Path,
                wall_seconds: float) -> None:
    """Final metrics and the learning curve."""
    step = result.nb_steps
    if result.test_rewards:
        tracker.log_metric("test/mean_reward", result.test_mean_reward, step)
    tracker.log_metric("train/steps_per_second", result.steps_per_second, step)
    tracker.log_metric("train/wall_seconds", wall_seconds, step)
    tracker.flush(wait=True)
    png = learning_curve(result.episode_end_steps, result.episode_rewards, result.evaluations,
                         folder / "learning_curve.png", title=name)
    tracker.log_artifact(png)
