"""The command line's grammar: an argparse parser per command, and the checks every command
makes before it starts work (nothing here imports TensorFlow or creates anything).

Today's grammar keeps working: no command means ``train``; ``-m``/``--multirun`` anywhere
turns ``train`` into ``multirun``; overrides stay positional Hydra-style ``key=value``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

from rltrain.config import GIVEN_KEYS, MACHINE_KEYS, ConfigError, mask_url, user_conf_dir
from rltrain.urls import DATABASES, STORAGE_SCHEMES, TRACKING_SCHEMES, check_url

PROG = "python -m sweep"
MULTIRUN_FLAGS = ("-m", "--multirun")  # as Hydra users type them, anywhere on the line
STUDY_OPTIONS = {"best": ("export",), "reproduce": (),
                 "evaluate": ("seeds", "jobs", "threshold", "first"), "watch": ("episodes",),
                 "register": ("name",)}
LOCAL_KEYS = (*MACHINE_KEYS, *GIVEN_KEYS)  # a copied multirun line keeps them
OVERRIDES_VAR = "SWEEP_OVERRIDES"  # overrides appended to every train/multirun/worker line
URL_KEYS = {"tracking.uri": TRACKING_SCHEMES, "sweep.storage": STORAGE_SCHEMES}


class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one ``error:`` line (ConfigError, exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = message.replace(", key=value", "")  # optional, but named by intermixed parsing
        raise ConfigError(f"{message} (see: {self.prog} --help)")


@dataclass
class Command:
    """A parsed command line: the command, its overrides and its flags."""

    name: str
    overrides: list[str] = field(default_factory=list)
    target: str = ""          # reproduce, evaluate, watch: RUN_ID or best
    cfg: str = ""             # --cfg job
    info: str = ""            # --info [groups|searches|all]
    as_json: bool = False     # best --json
    port: int = 5000          # ui --port
    yes: bool = False         # studies delete --yes
    config_dir: str = ""      # --config-dir DIR: the user's config folder, searched first
    line: list[str] = field(default_factory=list)  # the arguments as typed


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
            return Command("train", appended("train"))
        return None
    command, rest = normalize(args)
    ns = parsers[command].parse_intermixed_args(rest)
    return Command(command, [*ns.overrides, *appended(command)], target=getattr(ns, "target", ""),
                   cfg=getattr(ns, "cfg", None) or "", info=getattr(ns, "info", None) or "",
                   as_json=getattr(ns, "json", False), port=getattr(ns, "port", 5000),
                   yes=getattr(ns, "yes", False),
                   config_dir=ns.config_dir, line=list(args))


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


def command_line(command: str, args: Sequence[str]) -> str:
    """``python -m sweep COMMAND ARGS`` as a user types it (shell-quoted, masked; an empty
    COMMAND: train, unsaid), with ``--config-dir DIR`` when this process uses one."""
    folder = user_conf_dir()
    flag = ["--config-dir", str(folder)] if folder else []
    return mask_url(" ".join([PROG, *([command] if command else []),
                              *map(shlex.quote, [*flag, *args])]))


def key_of(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def refuse_sweeps(cmd: Command) -> None:
    """A sweep expression in a single run: say how to run it as a sweep."""
    from sweep.engine.space import parse as parse_override

    for text in cmd.overrides:
        if parse_override(text).is_sweep_override():
            line = " ".join(shlex.quote(a) for a in cmd.overrides)
            raise ConfigError(mask_url(f"{text} is a sweep; sweeps run with: "
                                       f"{PROG} multirun {line}"))


def study_args(cmd: Command) -> list[str]:
    """What ``best``/``reproduce``/``evaluate``/``watch`` use of a copied multirun line: their
    own options, what names the study (``sweep.*``, ``env=``, ``search=``: ``env=acrobot``
    finds ``dqn-acrobot``) and the local tracking keys. The rest must still be a valid
    multirun line; it is ignored with a note on stderr."""
    options = STUDY_OPTIONS[cmd.name]
    own = [o for o in cmd.overrides if "=" in o and o.split("=", 1)[0] in options]
    rest = [o for o in cmd.overrides if o not in own]
    local = () if cmd.name == "best" else LOCAL_KEYS
    from sweep.engine.settings import plan, study_keys

    named = study_keys(rest)
    kept = [o for o in rest if o in named or key_of(o) in local]
    ignored = [o for o in rest if o not in kept]
    if ignored:

        plan(rest)  # an unknown key or a bad expression fails here as in multirun
        uses = "sweep.*, env=, search=" if cmd.name == "best" \
            else "sweep.*, env=, search=, tracking.* and train.progress/threads"
        shown = mask_url(" ".join(shlex.quote(o) for o in ignored))
        print(f"note: {cmd.name} uses {uses}; ignored: {shown}", file=sys.stderr)
    return [*own, *kept]


def tracking_uri(overrides: Sequence[str]) -> str:
    """The tracking URI a command line uses (the last ``tracking.uri=``, else MLflow's
    ``MLFLOW_TRACKING_URI``); empty: the local store."""
    given = [o.split("=", 1)[1] for o in overrides if key_of(o) == "tracking.uri" and "=" in o]
    return given[-1] if given else os.environ.get("MLFLOW_TRACKING_URI", "")


def check_urls(overrides: Sequence[str]) -> None:
    """Every URL of the command line (``tracking.uri``, ``sweep.storage``; else
    ``MLFLOW_TRACKING_URI``) must have a URL's form: checked before anything is composed,
    printed or written (ConfigError naming the key, the login masked)."""
    for override in overrides:
        key = key_of(override)
        if key in URL_KEYS and "=" in override:
            check_url(key, override.split("=", 1)[1].strip("'\""), URL_KEYS[key])
    if not any(key_of(o) == "tracking.uri" for o in overrides):
        check_url("MLFLOW_TRACKING_URI", os.environ.get("MLFLOW_TRACKING_URI", ""),
                  TRACKING_SCHEMES)


def check_tracking(uri: str) -> None:
    """A tracking server or database must answer before any work starts: one masked
    ``error:`` line within seconds otherwise (a local store is not checked). A URI of the
    wrong form (see ``rltrain.urls``) is refused without a connection."""
    check_url("tracking.uri" if uri else "MLFLOW_TRACKING_URI",
              uri or os.environ.get("MLFLOW_TRACKING_URI", ""), TRACKING_SCHEMES)
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    scheme = uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else ""
    if scheme in ("http", "https"):
        from rltrain.tracking import check_server

        check_server(uri)
    elif scheme in DATABASES:
        from sweep.engine.storage import check_database

        check_database(uri, "tracking.uri")
