"""The study's sampler and pruner, built from ``sweep.*``."""

from __future__ import annotations

import numpy as np
import optuna

from sweep.engine.settings import Plan, SweepSettings


def sampler_seed(s: SweepSettings, number: int) -> int:
    """The sampler's seed for trial ``number``: every trial draws from its own stream, so
    workers, resumed sweeps and invocations running at once on one study never sample the
    same values, and the same sweep seed gives the same trials (one worker)."""
    return int(np.random.SeedSequence([s.seed, number]).generate_state(1)[0])


def make_sampler(s: SweepSettings, seed: int) -> optuna.samplers.BaseSampler:
    samplers = optuna.samplers
    if s.sampler == "random":
        return samplers.RandomSampler(seed=seed)
    if s.sampler == "cmaes":
        return samplers.CmaEsSampler(seed=seed, n_startup_trials=s.sampler_startup_trials)
    if s.sampler == "gp":
        return samplers.GPSampler(seed=seed, n_startup_trials=s.sampler_startup_trials)
    return samplers.TPESampler(seed=seed, n_startup_trials=s.sampler_startup_trials)


def make_pruner(plan: Plan) -> optuna.pruners.BasePruner:
    """median/hyperband/threshold act on the seeds' aggregate at each evaluation step;
    wilcoxon on the seeds' scores, one seed (instance) at a time."""
    s, pruners = plan.settings, optuna.pruners
    if s.pruner == "median":
        return pruners.MedianPruner(n_startup_trials=s.prune_startup_trials,
                                    n_warmup_steps=s.prune_warmup_steps)
    if s.pruner == "hyperband":
        searched = "train.nb_steps" in plan.space.dimensions
        return pruners.HyperbandPruner(
            min_resource=max(1, s.prune_warmup_steps, plan.eval_interval),
            max_resource="auto" if searched else plan.nb_steps, reduction_factor=3)
    if s.pruner == "threshold":
        bound = {"lower" if s.direction == "maximize" else "upper": s.prune_threshold}
        return pruners.ThresholdPruner(n_warmup_steps=s.prune_warmup_steps, **bound)
    if s.pruner == "wilcoxon":
        return pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=2)
    return pruners.NopPruner()
