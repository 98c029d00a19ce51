"""The command line: one argparse parser tree (a parser per command), the typed options each
command receives (sweep/commands/__init__.py's ``Command``), and the run of a parsed line:
the checks every command makes before it starts work, then the command's module.

Today's grammar keeps working: no command means ``train``; ``-m``/``--multirun`` anywhere
turns ``train`` into ``multirun``; overrides stay positional Hydra-style ``key=value``, and
so do the commands' own options (``seeds=N``, ``export=NAME`` ...), which are parsed,
checked and typed here. Bad input is one ``error:`` line and exit code 2; nothing here
imports TensorFlow or creates anything before the command runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
import textwrap
import threading
from collections.abc import Sequence
from dataclasses import replace

from rltrain.config import GIVEN_KEYS, MACHINE_KEYS, ConfigError, mask_url, use_config_dir
from rltrain.secrets import install_masking, mask, register_environment, register_secrets, report
from sweep.commands import Command
from sweep.engine.preflight import check_urls, key_of
from sweep.engine.shell import PROG

MULTIRUN_FLAGS = ("-m", "--multirun")  # as Hydra users type them, anywhere on the line
STUDY_OPTIONS = {"best": ("export",), "reproduce": (),
                 "evaluate": ("seeds", "jobs", "threshold", "first"), "watch": ("episodes",),
                 "register": ("name",)}
LOCAL_KEYS = (*MACHINE_KEYS, *GIVEN_KEYS)  # a copied multirun line keeps them
OVERRIDES_VAR = "SWEEP_OVERRIDES"  # overrides appended to every train/multirun/worker line
STUDIES_KEYS = ("sweep.storage", "sweep.dir", "tracking.uri")  # what studies takes
STUDIES_USAGE = ("studies takes [delete NAME --yes] sweep.storage=URL, sweep.dir=DIR, "
                 "tracking.uri=URI")


class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one ``error:`` line (ConfigError, exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = message.replace(", key=value", "")  # optional, but named by intermixed parsing
        raise ConfigError(f"{message} (see: {self.prog} --help)")


DESCRIPTIONS = {
    "train": "Train one agent from the composed config and record it in MLflow "
             "(the default command).",
    "multirun": "Create or resume an Optuna study and run its trials (also: -m, --multirun).",
    "worker": "Join an existing study (the same line as its multirun); from another machine: "
              "sweep.storage=postgresql://USER@HOST/DB.",
    "best": "The winner of a study (the recheck's, else the best objective) and the command "
            "that trains it again. Takes the line of the multirun that made the study: uses "
            "sweep.* and env=/search= (without sweep.study_name the study is dqn-<env group>: "
            "env=acrobot finds dqn-acrobot), ignores the rest.",
    "reproduce": "Retrain a recorded run with its config and seed; says match or mismatch.",
    "evaluate": "Retrain a run's config on N fresh seeds: the delivered agents' test, mean "
                "and IQM with 95% intervals, solved seeds.",
    "watch": "A GIF of a run's trained agent, logged on the run.",
    "register": "Register a run's agent (or the study's best) in MLflow's Model Registry, "
                "loadable with mlflow.pyfunc.load_model.",
    "studies": "List the studies of a storage (trials by state, best value, the recheck's "
               "winner, last activity), or delete one. The storage, as multirun finds it: "
               "sweep.storage=URL, else every journal under sweep.dir (multirun/).",
    "ui": "Serve MLflow's UI on the project's store (or point at the tracking server) and "
          "print the link to the latest sweep, in the Model training view.",
}
BEST_STUDY = ("best: the study named by sweep.study_name=NAME, else dqn-<env group> "
              "(env=acrobot: dqn-acrobot)\n")
EPILOGS = {
    "train": "examples:\n  python -m sweep agent.model.units=64 train.nb_steps=2000\n"
             "  python -m sweep env=acrobot          # env groups: cartpole acrobot mountaincar "
             "lunarlander atari\n"
             "  python -m sweep env=atari env.id=ALE/Breakout-v5 env.reward_threshold=null\n"
             "  python -m sweep +experiment=tutorial_v0\n  python -m sweep --cfg job",
    "multirun": "the search space: search=NAME, else the env group's conf/search/<env>.yaml;\n"
                "the study: sweep.study_name=NAME, else dqn-<env group> (dqn-cartpole, "
                "dqn-acrobot ...)\n"
                "examples:\n  python -m sweep multirun sweep.n_trials=10 "
                "'agent.lr=tag(log,interval(1e-4,1e-2))'\n"
                "  python -m sweep multirun env=acrobot             # study dqn-acrobot, "
                "conf/search/acrobot.yaml\n"
                "  python -m sweep multirun search=default --cfg job",
    "worker": "example:\n  python -m sweep worker sweep.storage=postgresql://sweep@DBHOST/optuna "
              "sweep.study_name=big",
    "best": "examples:\n  python -m sweep best --json\n  python -m sweep best env=acrobot"
            "                   # study dqn-acrobot\n"
            "  python -m sweep best export=cartpole_best "
            "&& python -m sweep +experiment=cartpole_best",
    "reproduce": BEST_STUDY + "examples:\n  python -m sweep reproduce best sweep.study_name=NAME\n"
                 "  python -m sweep reproduce best env=acrobot\n"
                 "  python -m sweep reproduce 0123abcd...",
    "evaluate": "options (key=value):\n  seeds=N (5)  jobs=N (2)  threshold=X (the env's "
                "reward_threshold)  first=I (start at the I-th fresh seed)\n"
                + BEST_STUDY + "examples:\n  python -m sweep evaluate best seeds=10\n"
                "  python -m sweep evaluate best env=acrobot seeds=5",
    "watch": "options (key=value):\n  episodes=N (1)\n"
             + BEST_STUDY + "examples:\n  python -m sweep watch RUN_ID\n"
             "  python -m sweep watch best env=acrobot\n"
             "  python -m sweep watch models:/dqn-acrobot/latest",
    "register": "options (key=value):\n  name=NAME (the study's name)\n"
                + BEST_STUDY + "examples:\n  python -m sweep register best\n"
                "  python -m sweep register best env=acrobot",
    "studies": "delete: Optuna's delete_study, and the study's folder <sweep.dir>/NAME/ for a "
               "journal study;\nits MLflow runs are kept (the command says how many, where)\n"
               "examples:\n  python -m sweep studies\n"
               "  python -m sweep studies sweep.storage=postgresql://sweep@DBHOST/optuna\n"
               "  python -m sweep studies delete dqn-acrobot --yes",
    "ui": "examples:\n  python -m sweep ui\n  python -m sweep ui --port 5001",
}
OVERRIDES_HELP = {
    "train": "Hydra overrides: key=value, +experiment=NAME, group=option",
    "multirun": "sweep.KEY=VALUE, search=NAME, sweep expressions (key=choice(...)), "
                "fixed key=value",
    "worker": "the same line as the study's multirun",
    "best": "export=NAME, and the study's settings (the multirun's line: sweep.*, env=, "
            "search= are used)",
    "reproduce": "sweep.*, env=, search= to find 'best'; tracking.uri/experiment, "
                 "train.progress/threads",
    "evaluate": "seeds=N jobs=N threshold=X; sweep.*, env=, search=, tracking.*, as reproduce",
    "watch": "episodes=N; sweep.*, env=, search= to find 'best'; tracking.uri/experiment",
    "register": "name=NAME; sweep.*, env=, search=, tracking.*, as reproduce",
    "studies": "[delete NAME] sweep.storage=URL, sweep.dir=DIR, tracking.uri=URI (where the "
               "study's runs are counted)",
    "ui": "tracking.uri=..., tracking.experiment=...",
}


def build() -> tuple[Parser, dict[str, Parser]]:
    """The top-level parser (for ``--help``) and one parser per command."""
    top = Parser(prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
                 description="Tune a keras-rl2 DQN agent: Hydra configs, Optuna studies, "
                             "MLflow runs.",
                 epilog="no command: train. Each command has its own --help, e.g. "
                        f"{PROG} best --help")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    parsers: dict[str, Parser] = {}
    for name, description in DESCRIPTIONS.items():
        first = description.split(". ")[0].rstrip(".")
        p = sub.add_parser(name, help=first.replace("%", "%%"),
                           description=textwrap.fill(description, 88), epilog=EPILOGS[name],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.prog = f"{PROG} {name}"
        if name in STUDY_OPTIONS and name != "best":
            p.add_argument("target", metavar="RUN_ID|best",
                           help="an MLflow run id, or best: the best trial of the study")
        p.add_argument("overrides", nargs="*", metavar="key=value", help=OVERRIDES_HELP[name])
        p.add_argument("--config-dir", "-cd", default="", metavar="DIR",
                       help="your own config folder, searched before the shipped conf/ "
                            "(its env/NAME.yaml and search/NAME.yaml: env=NAME, search=NAME)")
        if name in ("train", "multirun", "worker"):
            p.add_argument("--cfg", "-c", choices=("job",),
                           help="print the composed config (multirun, worker: the sweep "
                                "settings and the search space) and exit")
            p.add_argument("--info", nargs="?", const="all", choices=("groups", "searches", "all"),
                           help="list the config groups and the search spaces (conf/) and exit")
        if name == "best":
            p.add_argument("--json", action="store_true", help="print one JSON object")
        if name == "studies":
            p.add_argument("--yes", action="store_true", help="delete: yes, delete it")
        if name == "ui":
            p.add_argument("--port", type=int, default=5000, help="the UI's port (5000)")
        parsers[name] = p
    return top, parsers


def normalize(args: Sequence[str]) -> tuple[str, list[str]]:
    """``(command, rest)``: no command means train, ``-m`` anywhere makes train multirun."""
    args = list(args)
    command = args.pop(0) if args and args[0] in DESCRIPTIONS else "train"
    if command in ("train", "multirun") and any(a in MULTIRUN_FLAGS for a in args):
        command, args = "multirun", [a for a in args if a not in MULTIRUN_FLAGS]
    return command, args


def parse(args: Sequence[str]) -> Command | None:
    """The parsed command line; None after printing help (``--help``, ``help [COMMAND]``)."""
    top, parsers = build()
    if not args or args[0] in ("-h", "--help", "help"):
        if args and args[0] == "help" and len(args) > 1 and args[1] in parsers:
            parsers[args[1]].print_help()
        elif args:
            top.print_help()
        else:  # no arguments at all: train the defaults (SWEEP_OVERRIDES still apply)
            overrides = appended("train")
            return Command("train", overrides, tracking_uri=tracking_uri(overrides))
        return None
    command, rest = normalize(args)
    ns = parsers[command].parse_intermixed_args(rest)
    overrides = [*ns.overrides, *appended(command)]
    cmd = Command(command, overrides, tracking_uri=tracking_uri(overrides),
                  config_dir=ns.config_dir, cfg=getattr(ns, "cfg", None) or "",
                  info=getattr(ns, "info", None) or "", target=getattr(ns, "target", ""),
                  as_json=getattr(ns, "json", False), port=getattr(ns, "port", 5000),
                  yes=getattr(ns, "yes", False))
    if command in STUDY_OPTIONS:
        return study_options(cmd)
    return studies_options(cmd) if command == "studies" else cmd


def study_options(cmd: Command) -> Command:
    """``best``, ``reproduce``, ``evaluate``, ``watch``, ``register``: the target and the
    command's own ``key=value`` options (the last of each key wins), checked and typed; the
    rest stay overrides."""
    if "=" in cmd.target:
        raise ConfigError(f"{cmd.name}: give a run id or 'best' first "
                          f"({PROG} {cmd.name} RUN_ID|best ...)")
    names = STUDY_OPTIONS[cmd.name]
    own = [o for o in cmd.overrides if "=" in o and o.split("=", 1)[0] in names]
    given = dict(o.split("=", 1) for o in own)
    cmd = replace(cmd, overrides=[o for o in cmd.overrides if o not in own])
    if cmd.name == "best":
        from sweep.commands.best import check_export_name

        for name in (o.split("=", 1)[1] for o in own):
            check_export_name(name)
        return replace(cmd, export=given.get("export", ""))
    if cmd.name == "evaluate":
        seeds = whole(given, "seeds", 5, 1)
        jobs = whole(given, "jobs", min(2, seeds), 1)
        threshold = number(given, "threshold")
        return replace(cmd, seeds=seeds, jobs=jobs, threshold=threshold,
                       first=whole(given, "first", 0, 0))
    if cmd.name == "watch":
        return replace(cmd, episodes=whole(given, "episodes", 1, 1))
    if cmd.name == "register":
        return replace(cmd, model_name=given.get("name", ""))
    return cmd  # reproduce: no options of its own


def whole(given: dict[str, str], key: str, default: int, minimum: int) -> int:
    """Option ``key=N``: a whole number >= ``minimum`` (``default`` when not given)."""
    raw = given.get(key, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw}: must be a whole number") from None
    if value < minimum:
        raise ConfigError(f"{key}={raw}: must be >= {minimum}")
    return value


def number(given: dict[str, str], key: str) -> float | None:
    """Option ``key=X``: a number, or None when not given."""
    if key not in given:
        return None
    try:
        return float(given[key])
    except ValueError:
        raise ConfigError(f"{key}={given[key]}: must be a number") from None


def studies_options(cmd: Command) -> Command:
    """``studies [list]`` or ``studies delete NAME``, with ``sweep.storage=``, ``sweep.dir=``
    and ``tracking.uri=`` (the last of each wins); nothing else."""
    words = [a for a in cmd.overrides if "=" not in a]
    given: dict[str, str] = {}
    for arg in (a for a in cmd.overrides if "=" in a):
        key, _, value = arg.partition("=")
        if key not in STUDIES_KEYS:
            raise ConfigError(f"{mask_url(arg)}: {STUDIES_USAGE}")
        given[key] = value
    deleting = words[:1] == ["delete"] and len(words) == 2
    if words and words != ["list"] and not deleting:
        raise ConfigError(f"{' '.join(words)}: {STUDIES_USAGE}")
    return replace(cmd, overrides=[a for a in cmd.overrides if "=" in a],
                   delete=words[1] if deleting else None,
                   storage=given.get("sweep.storage", ""), sweep_dir=given.get("sweep.dir", ""))


def appended(command: str) -> list[str]:
    """``SWEEP_OVERRIDES="train.nb_steps=1000 sweep.n_trials=4"``: overrides appended to
    every ``train``, ``multirun`` and ``worker`` line (they win over the line's own; ``sweep.*``
    only for the sweeps): a smoke run of any command as written, e.g. the README's."""
    if command not in ("train", "multirun", "worker"):
        return []
    try:
        given = shlex.split(os.environ.get(OVERRIDES_VAR, ""))
    except ValueError as err:
        raise ConfigError(f"{OVERRIDES_VAR}: {err}") from err
    return [o for o in given if command != "train" or not key_of(o).startswith("sweep.")]


def refuse_sweeps(cmd: Command) -> None:
    """A sweep expression in a single run: say how to run it as a sweep."""
    from sweep.engine.space import parse as parse_override

    for text in cmd.overrides:
        if parse_override(text).is_sweep_override():
            line = " ".join(shlex.quote(a) for a in cmd.overrides)
            raise ConfigError(mask_url(f"{text} is a sweep; sweeps run with: "
                                       f"{PROG} multirun {line}"))


def study_line(cmd: Command) -> Command:
    """What ``best``/``reproduce``/``evaluate``/``watch``/``register`` use of a copied multirun
    line: what names the study (``sweep.*``, ``env=``, ``search=``: ``env=acrobot`` finds
    ``dqn-acrobot``) and the local tracking keys. The rest must still be a valid multirun
    line; it is ignored with a note on stderr."""
    from sweep.engine.settings import plan, study_keys

    local = () if cmd.name == "best" else LOCAL_KEYS
    named = study_keys(cmd.overrides)
    kept = [o for o in cmd.overrides if o in named or key_of(o) in local]
    ignored = [o for o in cmd.overrides if o not in kept]
    if ignored:
        plan(cmd.overrides)  # an unknown key or a bad expression fails here as in multirun
        uses = "sweep.*, env=, search=" if cmd.name == "best" \
            else "sweep.*, env=, search=, tracking.* and train.progress/threads"
        shown = mask_url(" ".join(shlex.quote(o) for o in ignored))
        print(f"note: {cmd.name} uses {uses}; ignored: {shown}", file=sys.stderr)
    return replace(cmd, overrides=kept)


def tracking_uri(overrides: Sequence[str]) -> str:
    """The tracking URI a command line uses (the last ``tracking.uri=``, else MLflow's
    ``MLFLOW_TRACKING_URI``); empty: the local store."""
    given = [o.split("=", 1)[1] for o in overrides if key_of(o) == "tracking.uri" and "=" in o]
    return given[-1] if given else os.environ.get("MLFLOW_TRACKING_URI", "")


def run(cmd: Command) -> int:
    """``--info`` and ``--cfg job`` answer at once (sweep/commands/show.py); anything else
    runs the command's module, sweep/commands/<command>.py, imported only now."""
    from sweep.commands import show

    if cmd.config_dir:
        use_config_dir(cmd.config_dir)
    if cmd.info:
        return show.run(cmd)
    check_urls(cmd.overrides)  # before any URL is composed, printed or written
    if cmd.name == "train":
        refuse_sweeps(cmd)
    if cmd.cfg:
        return show.run(cmd)
    if cmd.name in STUDY_OPTIONS:
        cmd = study_line(cmd)
    return importlib.import_module(f"sweep.commands.{cmd.name}").run(cmd)


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
        cmd = parse(args)
        return 0 if cmd is None else run(cmd)
    except ConfigError as err:
        message = " ".join(line.strip() for line in str(err).splitlines())
        print(f"error: {mask(message)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        return report(err)
