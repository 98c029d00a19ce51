"""``python -m sweep evaluate RUN_ID|best seeds=N``: how good is a config across seeds?

Retrains a run's recorded config on N fresh seeds (``sweep.engine.seeds.evaluate_seeds``: no
sweep trains on them) in parallel worker processes (one MLflow parent run, a child per
seed) and reports, over the seeds' delivered agents (their final test, on episodes that
did not pick them): the mean with its 95% t-interval, the IQM with its BCa interval, and
the seeds that solve the env (test reward >= the env's threshold) with a Wilson interval;
also the final weights' test and the last evaluation (sweep/engine/stats.py).
"""

from __future__ import annotations

import math
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rltrain.config import Config, ConfigError, flatten, to_yaml
from rltrain.folders import new_folder
from rltrain.secrets import masked_entry
from sweep.commands import Command
from sweep.engine import processes, stats
from sweep.engine.preflight import check_tracking
from sweep.engine.recorded import attach_gif, recorded_config, resolve
from sweep.engine.seeds import evaluate_seeds


@masked_entry
def train_seed(cfg_yaml: str, seed: int, parent_run_id: str, run_id: str) -> dict[str, Any]:
    """Worker process: train the config with ``seed`` as a child run of the parent."""
    from rltrain.run import tracked_train

    cfg = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.create(cfg_yaml))
    cfg.seed = seed
    cfg.tracking.run_name = f"seed-{seed}"
    child, result = tracked_train(cfg, tags={"evaluates": run_id, "evaluate.seed": seed},
                                  parent_run_id=parent_run_id)
    return {"seed": seed, "run_id": child, "evaluations": result.evaluations,
            "test": result.test_mean_reward, "final_test": result.final_test_mean_reward,
            "weights": str(result.weights_path),
            "output_dir": str(result.output_dir)}


def run_seeds(cfg: DictConfig, seeds: list[int], jobs: int, parent_run_id: str,
              run_id: str) -> list[dict[str, Any]]:
    """Train every seed, ``jobs`` worker processes at a time; print each as it ends."""
    cfg_yaml = OmegaConf.to_yaml(cfg, resolve=True)  # the real uri: workers must reach it
    context = processes.context()  # TensorFlow is not fork-safe: a clean forkserver
    done = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(train_seed, cfg_yaml, s, parent_run_id, run_id) for s in seeds]
        for future in as_completed(futures):
            out = future.result()
            done.append(out)
            last = out["evaluations"][-1][1] if out["evaluations"] else float("nan")
            print(f"  seed {out['seed']}: test {out['test']:.1f} (final weights "
                  f"{out['final_test']:.1f}, last evaluation {last:.1f}) "
                  f"({len(done)}/{len(seeds)})", file=sys.stderr, flush=True)
    return sorted(done, key=lambda out: out["seed"])


def threshold_for(cfg: DictConfig, given: float | None) -> float:
    """The solve threshold: ``threshold=`` as ``given``, else the env's registered
    reward_threshold."""
    if given is not None:
        return given
    from rltrain.config import reward_threshold

    value = reward_threshold(cfg.env)
    if math.isnan(value):
        raise ConfigError(f"env.id={cfg.env.id}: has no reward_threshold; pass threshold=X")
    return value


def run(cmd: Command) -> int:
    """Train a run's config on fresh seeds and report statistics over them."""
    from rltrain.plots import seed_curves
    from rltrain.tracking import stored_run, tracked_run

    check_tracking(cmd.tracking_uri)
    n_seeds, jobs = cmd.seeds, cmd.jobs
    run_id, here = resolve(cmd.target, cmd.overrides)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = recorded_config(run_id, here, Path(tmp), cmd.overrides)
    threshold = threshold_for(cfg, cmd.threshold)
    cfg.train.progress = False  # several workers: one line per finished seed instead
    if cfg.train.test_episodes < 1:
        raise ConfigError("train.test_episodes=0: evaluate scores each seed's final test")
    seeds = evaluate_seeds(n_seeds, cmd.first)
    original = stored_run(here.tracking.uri, run_id)
    name = f"evaluate-{original.name or run_id[:8]}"
    print(f"evaluating run {run_id} on {n_seeds} seeds with {jobs} workers", file=sys.stderr)
    with tracked_run(cfg.tracking.uri, cfg.tracking.experiment, name,
                     tags={"evaluates": run_id}) as parent:
        parent.log_params({**{k: v for k, v in flatten(cfg).items() if k != "seed"},
                           "evaluate.seeds": n_seeds, "evaluate.threshold": threshold})
        outs = run_seeds(cfg, seeds, jobs, parent.run_id, run_id)
        delivered = stats.summarize([o["test"] for o in outs], threshold)
        final = stats.summarize([o["final_test"] for o in outs], threshold)
        last = stats.summarize([o["evaluations"][-1][1] for o in outs if o["evaluations"]],
                               threshold)
        iqm_low, iqm_high = delivered.iqm_ci()
        for prefix, summary in (("", delivered), ("final_weights_", final)):
            low, high = summary.mean_ci
            for key, value in {"mean": summary.mean, "std": summary.std, "ci95_low": low,
                               "ci95_high": high, "iqm": summary.iqm,
                               "solved_fraction": summary.solved / summary.n}.items():
                parent.log_metric(f"evaluate/{prefix}{key}", value, 0)
        parent.log_metric("evaluate/iqm_ci95_low", iqm_low, 0)
        parent.log_metric("evaluate/iqm_ci95_high", iqm_high, 0)
        folder = new_folder(Path(outs[0]["output_dir"]).parent / f"evaluate-{run_id[:8]}")
        (folder / "config.yaml").write_text(to_yaml(cfg))
        seed_curves([o["evaluations"] for o in outs], folder / "seed_curves.png",
                    title=f"{name}: {n_seeds} seeds' evaluations")
        parent.log_artifacts(folder)
        best = max(outs, key=lambda o: o["test"])
        attach_gif(cfg, parent.run_id, Path(best["weights"]), folder)
    kept = "best evaluation's" if cfg.train.keep_best else "final"
    print(f"run {run_id} over {n_seeds} fresh seeds, {cfg.train.test_episodes} greedy test "
          f"episodes each (solved: >= {threshold:g}):")
    print(f"  delivered agent ({kept} weights): {delivered.line()}  std {delivered.std:.1f}  "
          f"IQM {delivered.iqm:.1f} [{iqm_low:.1f}, {iqm_high:.1f}]")
    if cfg.train.keep_best:
        print(f"  final weights:                  {final.line()}")
    print(f"  last evaluation:                {last.line()}")
    print(f"  per seed (test): {dict(zip(seeds, delivered.values, strict=True))}")
    from rltrain.links import link_line

    print(link_line(cfg.tracking.uri, parent.run_id, "evaluation")
          or f"  MLflow parent run {parent.run_id}")
    return 0
