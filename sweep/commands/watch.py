"""``python -m sweep watch RUN_ID|best|models:/NAME/latest [episodes=N]``: a GIF of a run's
trained agent, logged on that run.

The run's config is its own (sweep/engine/recorded.py); ``best``: the study's winner;
``models:/NAME/latest``: the run a registered model came from. The GIF is also kept in
``outputs/watch/<run id>/``.
"""

from __future__ import annotations

from pathlib import Path

from rltrain.config import ConfigError
from rltrain.folders import new_folder
from rltrain.tracking import RunNotFound, download_artifact, tracker_for
from sweep.commands import Command
from sweep.engine.preflight import check_tracking
from sweep.engine.recorded import recorded_config, resolve


def run(cmd: Command) -> int:
    """Render evaluation episodes of a run's saved weights as a GIF, logged on that run."""
    from rltrain.registry import source_run
    from rltrain.watch import record_gif

    check_tracking(cmd.tracking_uri)
    run_id, here = resolve(cmd.target, cmd.overrides)
    try:
        run_id = source_run(here.tracking.uri, run_id)  # models:/NAME/latest -> its run
    except RunNotFound as err:
        raise ConfigError(str(err)) from err
    folder = new_folder(Path("outputs") / "watch" / run_id)  # two watches at once: two folders
    cfg = recorded_config(run_id, here, folder, cmd.overrides)
    try:
        weights = download_artifact(here.tracking.uri, run_id, "dqn_weights.h5", folder)
    except RunNotFound as err:
        raise ConfigError(str(err)) from err
    gif, rewards, frames = record_gif(cfg, weights, folder / "agent.gif", episodes=cmd.episodes)
    tracker_for(here.tracking.uri, run_id).log_artifact(gif)
    print(f"{gif}: {frames} frames, episode rewards {rewards} (logged on run {run_id})")
    return 0
