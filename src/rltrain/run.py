"""One tracked training run: output folder, MLflow run, training, artifacts."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

from mlflow.entities import RunStatus
from omegaconf import DictConfig

from rltrain.config import flatten, mask_url, to_yaml, validate
from rltrain.folders import new_folder
from rltrain.plots import learning_curve
from rltrain.tracking import MetricsCallback, Tracker, tracked_run


def run_name(cfg: DictConfig) -> str:
    """``<env>-<impl>-s<seed>-<time>`` unless ``tracking.run_name`` is set."""
    stamp = datetime.now().strftime("%m%d-%H%M%S")
    return cfg.tracking.run_name or f"{cfg.env.id}-{cfg.agent.impl}-s{cfg.seed}-{stamp}"


def output_dir(cfg: DictConfig, root: Path = Path("outputs")) -> Path:
    """``cfg.output_dir`` (the caller's own), or a new ``outputs/<date>/<time>`` folder as
    Hydra would make, created here: a run starting in the same second gets ``<time>_1``."""
    if cfg.output_dir:
        return Path(cfg.output_dir)
    now = datetime.now()
    return new_folder(root / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S"))


def tracked_train(cfg: DictConfig, *, overrides: Sequence[str] = (), callbacks: Sequence[Any] = (),
                  tags: Mapping[str, Any] | None = None, parent_run_id: str | None = None,
                  folder: Path | None = None) -> tuple[str, Any]:
    """Train ``cfg`` inside an MLflow run; return ``(run_id, TrainResult)``.

    The run gets the flattened config as params, per-episode metrics, evaluations, the
    test reward, and the run folder (config, JSON log, weights, learning curve) as
    artifacts. It ends FINISHED, KILLED with tag ``stopped`` when a callback stopped it
    early (a pruned trial), or FAILED with tag ``error``.
    """
    [done] = tracked_train_together([cfg], overrides=overrides, callbacks=[callbacks],
                                    tags=[tags or {}], parent_run_id=parent_run_id,
                                    folders=[folder])
    return done


def tracked_train_together(cfgs: Sequence[DictConfig], *, overrides: Sequence[str] = (),
                           callbacks: Sequence[Sequence[Any]] | None = None,
                           tags: Sequence[Mapping[str, Any]] | None = None,
                           parent_run_id: str | None = None,
                           folders: Sequence[Path | None] | None = None,
                           after_round: Callable[[int], None] | None = None,
                           ) -> list[tuple[str, Any]]:
    """Train several configs (a trial's seeds) side by side, each in its own MLflow run
    under ``parent_run_id``; ``after_round`` runs when every one has reached its next
    evaluation (see ``rltrain.train.train_together``). Returns ``(run_id, TrainResult)``
    per config. If one fails, every run ends FAILED."""
    for cfg in cfgs:
        validate(cfg)  # before any run exists or TensorFlow is imported
    from rltrain.progress import ProgressBar
    from rltrain.train import Learner, train_together

    n = len(cfgs)
    callbacks = callbacks or [()] * n
    tags = tags or [{}] * n
    folders = folders or [None] * n
    logged: set[str] = set()  # runs whose folder is logged already
    with ExitStack() as stack:
        trackers, learners = [], []
        for cfg, own, tag, folder in zip(cfgs, callbacks, tags, folders, strict=True):
            folder = _prepare_folder(cfg, folder, overrides)
            tracker = stack.enter_context(tracked_run(
                cfg.tracking.uri, cfg.tracking.experiment, run_name(cfg), tags=tag,
                parent_run_id=parent_run_id))
            stack.callback(_log_folder, tracker, folder, logged)  # even after a crash
            tracker.log_params(flatten(cfg))
            tracker.set_tags({"output_dir": str(folder.resolve())})
            extra: list[Any] = [MetricsCallback(tracker)]
            if cfg.train.progress and n == 1:
                extra.append(ProgressBar(cfg.train.nb_steps, description=run_name(cfg)))
            learner = Learner(cfg, folder, [*extra, *own])
            stack.callback(learner.close)
            trackers.append(tracker)
            learners.append(learner)
        start = time.perf_counter()
        results = train_together(learners, after_round)
        wall = time.perf_counter() - start
        for cfg, tracker, result, tag in zip(cfgs, trackers, results, tags, strict=True):
            final = _log_result(tracker, run_name(cfg), result, result.output_dir, wall)
            _log_folder(tracker, result.output_dir, logged)
            if cfg.tracking.log_models and not result.stopped:
                _log_model(tracker, cfg, result, final, tag)
            if result.stopped:
                tracker.set_tags({"stopped": result.stopped})
                tracker.end(RunStatus.to_string(RunStatus.KILLED))
    return [(t.run_id, r) for t, r in zip(trackers, results, strict=True)]


def _prepare_folder(cfg: DictConfig, folder: Path | None, overrides: Sequence[str]) -> Path:
    """The run folder with the composed ``config.yaml`` and the ``overrides.yaml``."""
    folder = folder or output_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(to_yaml(cfg))
    (folder / "overrides.yaml").write_text(
        "".join(f"- {mask_url(o)}\n" for o in overrides) or "[]\n")
    return folder


def _log_folder(tracker: Tracker, folder: Path, logged: set[str]) -> None:
    """Log the run folder as the run's artifacts, once."""
    if tracker.run_id not in logged:
        logged.add(tracker.run_id)
        tracker.log_artifacts(folder)


def _log_result(tracker: Tracker, name: str, result: Any, folder: Path,
                wall_seconds: float) -> dict[str, float]:
    """Final metrics and the learning curve (logged with the folder when the run ends);
    return the final metrics."""
    step = result.nb_steps
    final: dict[str, float] = {}
    if result.test_rewards:
        final["test/mean_reward"] = result.test_mean_reward
    if result.final_test_rewards:
        final["test/final_weights_mean_reward"] = result.final_test_mean_reward
    final.update({"train/steps_per_second": result.steps_per_second,
                  "train/wall_seconds": wall_seconds})
    for key, value in final.items():
        tracker.log_metric(key, value, step)
    if result.best_evaluation is not None:
        tracker.log_metric("eval/best_mean_reward", result.best_evaluation[1],
                           result.best_evaluation[0])
        final["eval/best_mean_reward"] = result.best_evaluation[1]
    tracker.flush(wait=True)
    learning_curve(result.episode_end_steps, result.episode_rewards, result.evaluations,
                   folder / "learning_curve.png", title=name)
    return final


def _log_model(tracker: Tracker, cfg: DictConfig, result: Any, final: Mapping[str, float],
               tags: Mapping[str, Any]) -> None:
    """The delivered agent as an MLflow 3 logged model of the run (``tracking.log_models``),
    at the run's last step with its final metrics, the config as params, the run's tags. Best
    effort: a store that cannot take it costs a warning, not the run."""
    from rltrain.registry import log_agent

    weights = result.weights_path
    if weights is None or not Path(weights).is_file():
        return
    try:
        log_agent(tracker, "", result.output_dir / "config.yaml", Path(weights),
                  result.nb_steps, final, flatten(cfg), tags)
    except Exception as err:  # e.g. a tracking server older than MLflow 3: not the run's loss
        print(f"warning: run {tracker.run_id}: agent not logged as a model "
              f"(tracking.log_models=false turns this off): {mask_url(str(err))[:300]}",
              file=sys.stderr)
