"""``--cfg job`` and ``--info``: show what a command would run, then exit.

Nothing here imports TensorFlow or MLflow, or creates a run, a study or a folder.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from rltrain.config import (
    DEFAULT_CONF_DIR,
    compose_config,
    conf_dirs,
    find_option,
    group_names,
    group_options,
    mask_url,
    to_yaml,
    validate,
)
from sweep.commands import Command


def job_config(overrides: list[str]) -> str:
    """``train --cfg job``: the composed and validated training config as YAML, masked."""
    cfg = compose_config(overrides)
    validate(cfg)
    return to_yaml(cfg)


def sweep_config(overrides: list[str]) -> str:
    """``multirun --cfg job``: the checked sweep settings, the search space and the overrides
    every trial gets, as YAML, masked."""
    from sweep.engine.settings import plan

    p = plan(overrides)
    settings = asdict(p.settings)
    doc = {"sweep": settings, "search": p.space.describe(), "fixed": p.fixed}
    text = yaml.safe_dump(doc, sort_keys=False, width=100)
    return mask_url(f"# search={p.search_name}; storage {p.storage}\n{text}")


def groups(conf_dir: Path = DEFAULT_CONF_DIR) -> dict[str, list[str]]:
    """``{"agent": ["dqn"], ...}``: every config group (``--config-dir``'s and conf/'s) and
    its options."""
    return {name: group_options(name, conf_dir) for name in sorted(group_names(conf_dir))}


def info(what: str, conf_dir: Path = DEFAULT_CONF_DIR) -> str:
    """``--info``: config groups (``groups``), search spaces (``searches``) or both."""
    from sweep.engine.settings import SETTINGS_GROUPS

    lines: list[str] = []
    found = groups(conf_dir)
    if what in ("groups", "all"):
        where = ", ".join(str(d) for d in conf_dirs(conf_dir))
        lines.append(f"config groups ({where}: <group>/<option>.yaml, the first found wins):")
        for group, options in found.items():
            if group in SETTINGS_GROUPS:
                continue
            how = "+experiment=NAME" if group == "experiment" else f"{group}=OPTION"
            lines.append(f"  {group:<11} {', '.join(options):<40} {how}")
        lines.append("multirun's own groups:")
        for group in SETTINGS_GROUPS:
            lines.append(f"  {group:<11} {', '.join(found.get(group, [])):<40} {group}=OPTION")
    if what in ("searches", "all"):
        lines.append("search spaces (python -m sweep multirun search=NAME):")
        for name in found.get("search", []):
            path = find_option(f"search/{name}.yaml", conf_dir)
            entries = OmegaConf.to_container(OmegaConf.load(path))  # type: ignore[arg-type]
            lines.append(f"  {name}:")
            for key, value in entries.items():  # type: ignore[union-attr]
                lines.append(f"    {key}: {value}")
    return mask_url("\n".join(lines))


def run(cmd: Command) -> int:
    """``--info``: the config groups and search spaces; ``--cfg job``: the composed config
    (``train``) or the sweep's settings and space (``multirun``, ``worker``)."""
    if cmd.info:
        print(info(cmd.info))
    else:
        print(job_config(cmd.overrides) if cmd.name == "train"
              else sweep_config(cmd.overrides), end="")
    return 0
