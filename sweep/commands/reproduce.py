"""``python -m sweep reproduce RUN_ID|best``: retrain a recorded run with its config and seed,
and say "match" or where it diverges.

The config is the run's own (sweep/engine/recorded.py: ``tracking.*`` and
``train.progress`` from where the user is now); ``best``: the study's winner. The new run
is tagged ``reproduces`` and ``reproduce.verdict``, and gets a GIF of its agent.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from rltrain.tracking import metric_history, stored_run, tracker_for
from sweep.commands import Command
from sweep.engine.preflight import check_tracking
from sweep.engine.recorded import attach_gif, recorded_config, resolve


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


def run(cmd: Command) -> int:
    """Retrain a run's exact config with its seed; exit 0 on a match, 1 on a mismatch."""
    from rltrain.run import tracked_train

    check_tracking(cmd.tracking_uri)
    run_id, here = resolve(cmd.target, cmd.overrides)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = recorded_config(run_id, here, Path(tmp), cmd.overrides)
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
