"""``python -m sweep [train] [overrides]``: train one agent from the composed config and
record it in MLflow (the default command)."""

from __future__ import annotations

from rltrain.config import compose_config, validate
from sweep.commands import Command
from sweep.engine.preflight import check_tracking


def run(cmd: Command) -> int:
    """Train one agent; print its test reward, speed, files and MLflow link."""
    cfg = compose_config(cmd.overrides)
    validate(cfg)
    check_tracking(cfg.tracking.uri)
    from rltrain.links import link_line
    from rltrain.run import tracked_train

    run_id, result = tracked_train(cfg, overrides=cmd.overrides)
    print(f"run {run_id}: test mean reward {result.test_mean_reward:.1f} over "
          f"{len(result.test_rewards)} episodes, {result.steps_per_second:.0f} steps/s, "
          f"files in {result.output_dir}")
    if link := link_line(cfg.tracking.uri, run_id):
        print(link)
    return 0
