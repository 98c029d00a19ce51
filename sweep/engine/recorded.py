"""A recorded run, found again where the user is now: ``reproduce``, ``evaluate``, ``watch``
and ``register`` share it.

The run is an MLflow run id, or ``best``: the winner of the study the line names
(``sweep.*``, ``env=``, ``search=``; sweep/engine/winner.py). Its config comes from the
run's ``config.yaml`` artifact (what was trained, not today's defaults); only
``tracking.*`` and ``train.progress`` come from the command line, so runs can be found and
retrained where the user is now; ``train.threads`` too when it is given (a note says so),
else the run's own.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rltrain.config import (
    GIVEN_KEYS,
    MACHINE_KEYS,
    ConfigError,
    compose_config,
    load_saved,
    validate,
)
from rltrain.tracking import RunNotFound, download_artifact, stored_run, tracker_for
from sweep.engine.settings import study_keys
from sweep.engine.winner import named_by


def resolve(target: str, overrides: Sequence[str]) -> tuple[str, DictConfig]:
    """The run id (``best`` looks it up in the study: ``sweep.*``, ``env=``, ``search=`` name
    it) and the current tracking config (``tracking.experiment`` empty unless given: a
    retrained run goes to its original's experiment, keras-rl-acrobot for an acrobot run)."""
    named = study_keys(overrides)
    here = compose_config([o for o in overrides if o not in named])
    run_id = target
    if run_id == "best":
        run_id = named_by(named).run_id
    here.tracking.experiment = given(overrides, "tracking.experiment", "")
    return run_id, here


def given(overrides: Sequence[str], key: str, default: str) -> str:
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


def attach_gif(cfg: DictConfig, run_id: str, weights: Path, folder: Path) -> None:
    """Record one test episode of trained ``weights`` and log it on the run ``run_id``."""
    from rltrain.watch import record_gif

    gif, _, _ = record_gif(cfg, weights, folder / "agent.gif")
    tracker_for(cfg.tracking.uri, run_id).log_artifact(gif)
