"""``python -m sweep evaluate RUN_ID|best seeds=N``: how good is a config across seeds?

Retrains a run's recorded config on N fresh seeds in parallel worker processes (one MLflow
parent run, a child per seed) and reports, over the seeds' final greedy evaluations: mean,
standard deviation, a 95% bootstrap confidence interval of the mean, the interquartile
mean, and the fraction of seeds that solve the task (reward >= the env's threshold).
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from rltrain.config import Config, ConfigError, flatten, to_yaml
from sweep.reproduce import int_option, parse, recorded_config, resolve

FRESH_SEED_BASE = 100_000  # evaluation seeds: 100000, 100001, ... (sweeps use seed*10000 + n)


@dataclass
class Summary:
    """Statistics of the final evaluation reward over seeds."""

    finals: list[float]
    threshold: float

    @property
    def mean(self) -> float:
        return float(np.mean(self.finals))

    @property
    def std(self) -> float:
        return float(np.std(self.finals, ddof=1)) if len(self.finals) > 1 else 0.0

    @property
    def iqm(self) -> float:
        """Interquartile mean: the mean of the middle 50% (robust to a few bad seeds)."""
        from scipy.stats import trim_mean

        return float(trim_mean(self.finals, 0.25))

    def ci95(self, resamples: int = 10_000) -> tuple[float, float]:
        """95% percentile-bootstrap confidence interval of the mean."""
        rng = np.random.default_rng(0)
        values = np.asarray(self.finals)
        means = rng.choice(values, size=(resamples, len(values)), replace=True).mean(axis=1)
        low, high = np.percentile(means, [2.5, 97.5])
        return float(low), float(high)

    @property
    def solved(self) -> float:
        return float(np.mean([f >= self.threshold for f in self.finals]))


def train_seed(cfg_yaml: str, seed: int, parent_run_id: str, run_id: str) -> dict[str, Any]:
    """Worker process: train the config with ``seed`` as a child run of the parent."""
    from rltrain.run import tracked_train

    cfg = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.create(cfg_yaml))
    cfg.seed = seed
    cfg.tracking.run_name = f"seed-{seed}"
    child, result = tracked_train(cfg, tags={"evaluates": run_id, "evaluate.seed": seed},
                                  parent_run_id=parent_run_id)
    return {"seed": seed, "run_id": child, "evaluations": result.evaluations,
            "test": result.test_mean_reward, "weights": str(result.weights_path),
            "output_dir": str(result.output_dir)}


def run_seeds(cfg: DictConfig, seeds: list[int], jobs: int, parent_run_id: str,
              run_id: str) -> list[dict[str, Any]]:
    """Train every seed, ``jobs`` worker processes at a time; print each as it ends."""
    cfg_yaml = OmegaConf.to_yaml(cfg, resolve=True)  # the real uri: workers must reach it
    context = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
    done = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(train_seed, cfg_yaml, s, parent_run_id, run_id) for s in seeds]
        for future in as_completed(futures):
            out = future.result()
            done.append(out)
            last = out["evaluations"][-1][1] if out["evaluations"] else float("nan")
            print(f"  seed {out['seed']}: final evaluation {last:.1f} "
                  f"({len(done)}/{len(seeds)})", file=sys.stderr, flush=True)
    return sorted(done, key=lambda out: out["seed"])


def threshold_for(cfg: DictConfig, request_value: str | None) -> float:
    """The solve threshold: ``threshold=`` or the env's registered reward_threshold."""
    if request_value is not None:
        try:
            return float(request_value)
        except ValueError:
            raise ConfigError(f"threshold={request_value}: must be a number") from None
    import gymnasium as gym

    spec_threshold = gym.spec(cfg.env.id).reward_threshold
    if spec_threshold is None:
        raise ConfigError(f"env.id={cfg.env.id}: has no reward_threshold; pass threshold=X")
    return float(spec_threshold)


def cmd_evaluate(args: list[str]) -> int:
    """Train a run's config on fresh seeds and report statistics over them."""
    from rltrain.plots import seed_curves
    from rltrain.tracking import stored_run, tracked_run
    from sweep.reproduce import attach_gif

    request = parse(args, ("seeds", "jobs", "threshold"), "evaluate")
    n_seeds = int_option(request, "seeds", 5, 1)
    jobs = int_option(request, "jobs", min(2, n_seeds), 1)
    run_id, here = resolve(request)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = recorded_config(run_id, here, Path(tmp))
    threshold = threshold_for(cfg, request.options.get("threshold"))
    cfg.train.progress = False  # several workers: one line per finished seed instead
    seeds = [FRESH_SEED_BASE + i for i in range(n_seeds)]
    original = stored_run(here.tracking.uri, run_id)
    name = f"evaluate-{original.name or run_id[:8]}"
    print(f"evaluating run {run_id} on {n_seeds} seeds with {jobs} workers", file=sys.stderr)
    with tracked_run(cfg.tracking.uri, cfg.tracking.experiment, name,
                     tags={"evaluates": run_id}) as parent:
        parent.log_params({**{k: v for k, v in flatten(cfg).items() if k != "seed"},
                           "evaluate.seeds": n_seeds, "evaluate.threshold": threshold})
        outs = run_seeds(cfg, seeds, jobs, parent.run_id, run_id)
        summary = Summary([o["evaluations"][-1][1] for o in outs if o["evaluations"]], threshold)
        if not summary.finals:
            raise ConfigError("train.eval_interval=0: evaluate needs evaluations to compare")
        low, high = summary.ci95()
        for key, value in {"mean": summary.mean, "std": summary.std, "ci95_low": low,
                           "ci95_high": high, "iqm": summary.iqm,
                           "solved_fraction": summary.solved}.items():
            parent.log_metric(f"evaluate/{key}", value, 0)
        folder = Path(outs[0]["output_dir"]).parent / f"evaluate-{run_id[:8]}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yaml").write_text(to_yaml(cfg))
        seed_curves([o["evaluations"] for o in outs], folder / "seed_curves.png", title=name)
        parent.log_artifacts(folder)
        best = max(outs, key=lambda o: o["evaluations"][-1][1])
        attach_gif(cfg, parent.run_id, Path(best["weights"]), folder)
    print(f"run {run_id} over {n_seeds} seeds (final greedy evaluation, "
          f"{cfg.train.eval_episodes} episodes each):")
    print(f"  mean {summary.mean:.1f}  std {summary.std:.1f}  95% CI [{low:.1f}, {high:.1f}]  "
          f"IQM {summary.iqm:.1f}  solved (>= {threshold:g}) {summary.solved:.0%}")
    print(f"  per seed: {dict(zip(seeds, summary.finals, strict=True))}")
    print(f"  MLflow parent run {parent.run_id}")
    return 0
