"""``python -m sweep [COMMAND] [overrides]``: train one agent, or run a sweep.

Commands (each has its own ``--help``; sweep/cli.py holds the grammar):
  train [overrides]       train one agent (the default when no command is given)
  multirun [overrides]    run or resume an Optuna sweep (also: -m, --multirun)
  worker [overrides]      join an existing study (same settings as its multirun)
  best [--json] [export=NAME] [the multirun's line]
  reproduce RUN_ID|best   retrain a recorded run with its config and seed
  evaluate RUN_ID|best seeds=N [jobs=2] [threshold=X]
  watch RUN_ID|models:/NAME/latest [episodes=1]
  register RUN_ID|best [name=NAME]   the agent in MLflow's Model Registry
  ui [--port 5000]        serve MLflow's UI; link to the latest sweep
  studies [delete NAME --yes]   the studies of a storage; delete one

Every command checks its input and its tracking store before any work: bad input is one
``error:`` line and exit code 2. An unexpected error is one masked ``error:`` line and exit
code 1 (``SWEEP_DEBUG=1``: the masked traceback). No secret is ever printed.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from rltrain.config import ConfigError, compose_config, use_config_dir, validate
from rltrain.secrets import (
    install_masking,
    mask,
    register_environment,
    register_secrets,
    report,
)
from sweep import cli
from sweep.cli import Command


def cmd_train(cmd: Command) -> int:
    """Train one agent from the composed config and record it in MLflow."""
    cfg = compose_config(cmd.overrides)
    validate(cfg)
    cli.check_tracking(cfg.tracking.uri)
    from rltrain.links import link_line
    from rltrain.run import tracked_train

    run_id, result = tracked_train(cfg, overrides=cmd.overrides)
    print(f"run {run_id}: test mean reward {result.test_mean_reward:.1f} over "
          f"{len(result.test_rewards)} episodes, {result.steps_per_second:.0f} steps/s, "
          f"files in {result.output_dir}")
    if link := link_line(cfg.tracking.uri, run_id):
        print(link)
    return 0


def cmd_multirun(cmd: Command) -> int:
    """Create or resume the Optuna study and run its trials (sweep/study.py)."""
    cli.check_tracking(cli.tracking_uri(cmd.overrides))
    from sweep.engine.invocation import run
    from sweep.engine.settings import plan
    from sweep.present import report

    return run(plan(cmd.overrides), report, join=cmd.name == "worker").tell()


def cmd_best(cmd: Command) -> int:
    args = cli.study_args(cmd)
    cli.check_tracking(cli.tracking_uri(cmd.overrides))
    from sweep.best import cmd_best as run

    return run([*args, *(["--json"] if cmd.as_json else [])])


def cmd_rerun(cmd: Command) -> int:
    """reproduce, evaluate, watch: a recorded run (or the study's best) trained or played."""
    args = [cmd.target, *cli.study_args(cmd)]
    cli.check_tracking(cli.tracking_uri(args))
    if cmd.name == "evaluate":
        from sweep.evaluate import cmd_evaluate

        return cmd_evaluate(args)
    if cmd.name == "register":
        from sweep.register import cmd_register

        return cmd_register(args)
    from sweep.reproduce import cmd_reproduce, cmd_watch

    return (cmd_reproduce if cmd.name == "reproduce" else cmd_watch)(args)


def cmd_ui(cmd: Command) -> int:
    """Serve MLflow's UI on the project's store and link the latest sweep (sweep/ui.py)."""
    cli.check_tracking(cli.tracking_uri(cmd.overrides))
    from sweep.ui import cmd_ui as run

    return run(["--port", str(cmd.port), *cmd.overrides])


def cmd_studies(cmd: Command) -> int:
    """List the studies of a storage, or delete one (sweep/studies.py)."""
    if cmd.overrides[:1] == ["delete"]:
        cli.check_tracking(cli.tracking_uri(cmd.overrides))  # its runs are counted there
    from sweep.studies import cmd_studies as run

    return run(cmd.overrides, yes=cmd.yes)


COMMANDS: dict[str, Callable[[Command], int]] = {
    "train": cmd_train, "multirun": cmd_multirun, "worker": cmd_multirun, "best": cmd_best,
    "reproduce": cmd_rerun, "evaluate": cmd_rerun, "watch": cmd_rerun, "register": cmd_rerun,
    "ui": cmd_ui, "studies": cmd_studies}


def dispatch(cmd: Command) -> int:
    """``--info`` and ``--cfg job`` answer at once; anything else runs the command."""
    from sweep import show

    if cmd.config_dir:
        use_config_dir(cmd.config_dir)
    if cmd.info:
        print(show.info(cmd.info))
        return 0
    cli.check_urls(cmd.overrides)  # before any URL is composed, printed or written
    if cmd.name == "train":
        cli.refuse_sweeps(cmd)
    if cmd.cfg:
        print(show.job_config(cmd.overrides) if cmd.name == "train"
              else show.sweep_config(cmd.overrides), end="")
        return 0
    return COMMANDS[cmd.name](cmd)


def _thread_hook(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None and not isinstance(args.exc_value, SystemExit):
        report(args.exc_value, prefix=f"thread {args.thread.name if args.thread else '?'}: ")


def main(argv: list[str] | None = None) -> int:
    """Parse, run, and turn every error into one masked line: the single masking point."""
    args = list(sys.argv[1:] if argv is None else argv)
    register_environment()
    register_secrets(" ".join(args))
    threading.excepthook = _thread_hook
    install_masking()  # warnings and log records of every library
    try:
        cmd = cli.parse(args)
        return 0 if cmd is None else dispatch(cmd)
    except ConfigError as err:
        message = " ".join(line.strip() for line in str(err).splitlines())
        print(f"error: {mask(message)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        return report(err)


if __name__ == "__main__":
    sys.exit(main())
