"""Rerun a recorded run: ``reproduce`` (same seed), ``evaluate`` (fresh seeds), ``watch``.

    python -m sweep reproduce RUN_ID|best            # retrain; say "match" or where it diverges
    python -m sweep evaluate RUN_ID|best seeds=10    # retrain on 10 fresh seeds, with statistics
    python -m sweep watch RUN_ID [episodes=1]        # a GIF of the trained agent
    python -m sweep watch models:/NAME/latest        # ... of a registered model

The config comes from the run's ``config.yaml`` artifact (what was trained, not today's
defaults); only ``tracking.*`` and ``train.progress`` come from the command line, so runs
can be found and retrained where the user is now; ``train.threads`` too when it is given
(a note says so), else the run's own.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rltrain.config import (
    GIVEN_KEYS,
    MACHINE_KEYS,
    ConfigError,
    compose_config,
    load_saved,
    validate,
)
from rltrain.folders import new_folder
from rltrain.tracking import (
    RunNotFound,
    download_artifact,
    metric_history,
    stored_run,
    tracker_for,
)


@dataclass
class Request:
    """A command's target run, its own ``key=value`` options and the config overrides."""

    target: str
    options: dict[str, str] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)


def parse(args: list[str], options: tuple[str, ...], command: str) -> Request:
    """``RUN_ID|best`` first, then this command's options, then Hydra overrides."""
    if not args or "=" in args[0]:
        raise ConfigError(f"{command}: give a run id or 'best' first "
                          f"(python -m sweep {command} RUN_ID|best ...)")
    request = Request(args[0])
    for arg in args[1:]:
        key, _, value = arg.partition("=")
        if key in options:
            request.options[key] = value
        else:
            request.overrides.append(arg)
    return request


def int_option(request: Request, key: str, default: int, minimum: int) -> int:
    raw = request.options.get(key, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw}: must be a whole number") from None
    if value < minimum:
        raise ConfigError(f"{key}={raw}: must be >= {minimum}")
    return value


def resolve(request: Request) -> tuple[str, DictConfig]:
    """The run id (``best`` looks it up in the study: ``sweep.*``, ``env=``, ``search=`` name
    it) and the current tracking config (``tracking.experiment`` empty unless given: a
    retrained run goes to its original's experiment, keras-rl-acrobot for an acrobot run)."""
    from sweep.engine.settings import study_keys

    named = study_keys(request.overrides)
    here = compose_config([o for o in request.overrides if o not in named])
    run_id = request.target
    if run_id == "best":
        from sweep.engine.winner import named_by

        run_id = named_by(named).run_id
    here.tracking.experiment = given(request.overrides, "tracking.experiment", "")
    return run_id, here


def given(overrides: list[str], key: str, default: str) -> str:
    """The last ``key=value`` on the command line, else ``default``."""
    values = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").split("=", 1)[0] == key]
    return values[-1] if values else default


def recorded_config(run_id: str, here: DictConfig, folder: Path,
                    overrides: Sequence[str] = ()) -> DictConfig:
    """The run's composed config from its ``config.yaml``, checked against today's schema.

    ``here`` (where the user is now) gives ``tracking.uri`` and ``train.progress``;
    ``tracking.experiment`` too when given (empty: the run's own experiment), and
    ``train.threads`` when the command line's ``overrides`` give it (said on stderr)."""
    try:
        stored_run(here.tracking.uri, run_id)
        path = download_artifact(here.tracking.uri, run_id, "config.yaml", folder)
    except RunNotFound as err:
        raise ConfigError(str(err)) from err
    cfg = load_saved(path)
    for key in MACHINE_KEYS:  # the saved tracking uri is masked; use where we are now
        value = OmegaConf.select(here, key)
        if key != "tracking.experiment" or value:
            OmegaConf.update(cfg, key, value)
    for key in GIVEN_KEYS:
        recorded, value = OmegaConf.select(cfg, key), OmegaConf.select(here, key)
        if given(overrides, key, "") and value != recorded:
            print(f"note: {key}={value} as given (the run recorded {key}={recorded})",
                  file=sys.stderr)
            OmegaConf.update(cfg, key, value)
    cfg.output_dir = ""
    validate(cfg)
    return cfg


def first_difference(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> int | None:
    """Index of the first differing entry, ``len`` of the shorter if one is a prefix, or None."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def compare(original: str, uri: str, result: Any) -> list[str]:
    """Lines describing where a retrained result differs from the original run (empty: match)."""
    problems = []
    mine = list(zip(result.episode_end_steps, result.episode_rewards, strict=True))
    theirs = metric_history(uri, original, "episode_reward")
    if (i := first_difference(theirs, mine)) is not None:
        at = theirs[i] if i < len(theirs) else mine[i]
        problems.append(f"episode rewards diverge at episode {i} (step {at[0]}): original "
                        f"{_value(theirs, i)}, reproduced {_value(mine, i)}")
    evals = metric_history(uri, original, "eval/mean_reward")
    if (i := first_difference(evals, result.evaluations)) is not None:
        problems.append(f"evaluations diverge at #{i}: original {_value(evals, i)}, "
                        f"reproduced {_value(result.evaluations, i)}")
    test = metric_history(uri, original, "test/mean_reward")
    if test and result.test_rewards and test[-1][1] != result.test_mean_reward:
        problems.append(f"test mean reward: original {test[-1][1]}, "
                        f"reproduced {result.test_mean_reward}")
    return problems


def _value(series: list[tuple[int, float]], i: int) -> str:
    return f"{series[i][1]:g} at step {series[i][0]}" if i < len(series) else "(none)"


def cmd_reproduce(args: list[str]) -> int:
    """Retrain a run's exact config with its seed; exit 0 on a match, 1 on a mismatch."""
    from rltrain.run import tracked_train

    request = parse(args, (), "reproduce")
    run_id, here = resolve(request)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = recorded_config(run_id, here, Path(tmp), request.overrides)
    original = stored_run(here.tracking.uri, run_id)
    cfg.tracking.run_name = f"reproduce-{original.name or run_id[:8]}"
    new_id, result = tracked_train(cfg, tags={"reproduces": run_id})
    problems = compare(run_id, here.tracking.uri, result)
    if result.weights_path is not None:
        attach_gif(cfg, new_id, result.weights_path, result.output_dir)
    verdict = "match" if not problems else "mismatch"
    tracker_for(here.tracking.uri, new_id).set_tags({"reproduce.verdict": verdict})
    print(f"{verdict}: run {new_id} retrained run {run_id} "
          f"({len(result.episode_rewards)} episodes, test mean reward "
          f"{result.test_mean_reward:.1f})")
    for line in problems:
        print(f"  {line}")
    from rltrain.links import link_line

    if link := link_line(here.tracking.uri, new_id):
        print(link)
    return 0 if not problems else 1


def attach_gif(cfg: DictConfig, run_id: str, weights: Path, folder: Path) -> None:
    """Record one test episode of trained ``weights`` and log it on the run ``run_id``."""
    from rltrain.watch import record_gif

    gif, _, _ = record_gif(cfg, weights, folder / "agent.gif")
    tracker_for(cfg.tracking.uri, run_id).log_artifact(gif)


def cmd_watch(args: list[str]) -> int:
    """Render evaluation episodes of a run's saved weights as a GIF, logged on that run."""
    from rltrain.registry import source_run
    from rltrain.watch import record_gif

    request = parse(args, ("episodes",), "watch")
    episodes = int_option(request, "episodes", 1, 1)
    run_id, here = resolve(request)
    try:
        run_id = source_run(here.tracking.uri, run_id)  # models:/NAME/latest -> its run
    except RunNotFound as err:
        raise ConfigError(str(err)) from err
    folder = new_folder(Path("outputs") / "watch" / run_id)  # two watches at once: two folders
    cfg = recorded_config(run_id, here, folder, request.overrides)
    try:
        weights = download_artifact(here.tracking.uri, run_id, "dqn_weights.h5", folder)
    except RunNotFound as err:
        raise ConfigError(str(err)) from err
    gif, rewards, frames = record_gif(cfg, weights, folder / "agent.gif", episodes=episodes)
    tracker_for(here.tracking.uri, run_id).log_artifact(gif)
    print(f"{gif}: {frames} frames, episode rewards {rewards} (logged on run {run_id})")
    return 0
