"""``python -m sweep best [sweep.study_name=NAME|env=GROUP] [--json] [export=NAME]``: a study's
winner (no ``sweep.study_name``: the study ``dqn-<env group>``, as multirun names it).

Prints the best trial (value, number, MLflow run id, sampled values) and the command that
trains its config again. ``export=NAME`` writes that config as a Hydra experiment file,
``conf/experiment/NAME.yaml``, so that ``python -m sweep +experiment=NAME`` trains it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

from omegaconf import OmegaConf

from rltrain.config import (
    DEFAULT_CONF_DIR,
    ConfigError,
    compose_config,
    group_names,
    user_conf_dir,
)
from sweep.commands import Command
from sweep.engine.preflight import check_tracking
from sweep.engine.shell import command_line
from sweep.engine.space import parse
from sweep.engine.winner import Winner, named_by

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def check_export_name(name: str) -> None:
    """An experiment file's name: letters, digits, '-' and '_' (ConfigError otherwise)."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"export={name}: use letters, digits, '-' and '_'")


def export(best: Winner, name: str, conf_dir: Path = DEFAULT_CONF_DIR) -> Path:
    """Write ``experiment/NAME.yaml`` (``@package _global_``) from the trial's overrides, in
    the ``--config-dir`` folder when one is given, else in conf/.

    Config group choices (``env=...``) go to its ``defaults`` list as ``override /env: X``;
    ``tracking.*`` is left out (where runs are recorded is not part of the trained config).
    """
    check_export_name(name)
    overrides = [o for o in best.overrides if not o.lstrip("+").startswith("tracking.")]
    compose_config(overrides, conf_dir)  # still a valid config today?
    groups = group_names(conf_dir)
    chosen = [o for o in overrides if o.lstrip("+").split("=", 1)[0] in groups]
    values = OmegaConf.create()
    for override in (parse(o) for o in overrides if o not in chosen):
        OmegaConf.update(values, override.key_or_group, override.value(), merge=False)
    defaults = [f"override /{o.split('=', 1)[0]}: {o.split('=', 1)[1]}" if o[0] != "+"
                else f"/{o[1:].split('=', 1)[0]}: {o.split('=', 1)[1]}" for o in chosen]
    body = OmegaConf.to_yaml(values) if values else ""
    if defaults:
        body = "defaults:\n" + "".join(f"  - {d}\n" for d in defaults) + "  - _self_\n" + body
    path = (user_conf_dir() or conf_dir) / "experiment" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    header = (f"# @package _global_\n# Best trial {best.trial} of study {best.study} "
              f"({best.value:g}), MLflow run {best.run_id}.\n"
              f"# Train it: python -m sweep +experiment={name}\n")
    path.write_text(header + body)
    try:
        compose_config([f"+experiment={name}"], conf_dir)  # loads as written
    except ConfigError:
        path.unlink()
        raise
    return path


def run(cmd: Command) -> int:
    """Print the study's winner and how to train it again (``--json``: one JSON object);
    ``export=NAME``: also as an experiment file."""
    check_tracking(cmd.tracking_uri)
    best = named_by(cmd.overrides)
    path = export(best, cmd.export) if cmd.export else None
    if cmd.as_json:
        print(json.dumps({**asdict(best), "command": best.command,
                          "experiment": str(path) if path else None}))
        return 0
    print(f"study {best.study}: best trial {best.trial}, objective {best.value:g}")
    if best.recheck:
        r = best.recheck
        print(f"  recheck winner on {len(r['seeds'])} fresh seeds: test mean {r['mean']:.1f} "
              f"(95% CI {r['ci95'][0]:.1f}-{r['ci95'][1]:.1f}), solved {r['solved']}/"
              f"{len(r['seeds'])} (>= {r['threshold']:g}), objective there {r['score']:.1f}")
    else:
        print("  (no recheck: the best objective on the trial's own seeds)")
    print(f"  MLflow run: {best.run_id}")
    for key, value in best.params.items():
        print(f"  {key} = {value}")
    print(f"train it again:\n  {best.command}")
    if path:
        print(f"wrote {path}; train it with:\n  "
              f"{command_line('', [f'+experiment={path.stem}'])}")
    else:
        print(f"as an experiment file: {command_line('best', ['export=NAME'])}")
    print(f"judge it on many seeds:\n  python -m sweep evaluate {best.run_id} seeds=10")
    return 0
