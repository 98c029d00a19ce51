"""``python -m sweep [COMMAND] [overrides]``: train one agent, or run a sweep.

Commands:
  train [overrides]       train one agent (the default when no command is given)
  multirun [overrides]    run or resume an Optuna sweep (also: -m, --multirun)
  best [sweep.study_name=NAME] [--json] [export=NAME]
                          the best trial of a study and the command that trains it again
  reproduce RUN_ID|best   retrain a recorded run with its config and seed; match or mismatch
  evaluate RUN_ID|best seeds=N [jobs=2] [threshold=X]
                          retrain on N fresh seeds: mean, std, 95% CI, IQM, solved fraction
  watch RUN_ID [episodes=1]
                          a GIF of the run's trained agent, logged on the run
  worker [overrides]      join an existing study (same settings as its multirun), e.g.
                          from another machine on sweep.storage=postgresql://USER@HOST/DB

Overrides use Hydra's syntax: ``agent.model.units=64 train.nb_steps=2000``.
"""

from __future__ import annotations

import sys

from rltrain.config import ConfigError, compose_config, mask_url


def cmd_multirun(args: list[str]) -> int:
    """Create or resume the Optuna study and run its trials (sweep/study.py)."""
    from sweep.study import cmd_multirun as run

    return run(args)


def cmd_train(args: list[str]) -> int:
    """Train one agent from the composed config and record it in MLflow."""
    from rltrain.run import tracked_train

    cfg = compose_config(args)
    run_id, result = tracked_train(cfg, overrides=args)
    print(f"run {run_id}: test mean reward {result.test_mean_reward:.1f} over "
          f"{len(result.test_rewards)} episodes, {result.steps_per_second:.0f} steps/s, "
          f"files in {result.output_dir}")
    return 0


def cmd_worker(args: list[str]) -> int:
    """Join an existing study and run its trials (sweep/study.py)."""
    from sweep.study import cmd_worker as run

    return run(args)


def cmd_best(args: list[str]) -> int:
    from sweep.best import cmd_best as run

    return run(args)


def cmd_reproduce(args: list[str]) -> int:
    from sweep.reproduce import cmd_reproduce as run

    return run(args)


def cmd_evaluate(args: list[str]) -> int:
    from sweep.evaluate import cmd_evaluate as run

    return run(args)


def cmd_watch(args: list[str]) -> int:
    from sweep.reproduce import cmd_watch as run

    return run(args)


COMMANDS = {"train": cmd_train, "multirun": cmd_multirun, "best": cmd_best,
            "reproduce": cmd_reproduce,
            "evaluate": cmd_evaluate, "watch": cmd_watch, "worker": cmd_worker}
MULTIRUN_FLAGS = ("-m", "--multirun")  # as Hydra users type them, anywhere on the line


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    command = args.pop(0) if args and args[0] in COMMANDS else "train"
    if any(arg in MULTIRUN_FLAGS for arg in args):
        command, args = "multirun", [arg for arg in args if arg not in MULTIRUN_FLAGS]
    try:
        return COMMANDS[command](args)
    except ConfigError as err:
        print(f"error: {mask_url(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
