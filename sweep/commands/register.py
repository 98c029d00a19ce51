"""``python -m sweep register best|RUN_ID [name=NAME]``: the agent as an MLflow model.

Logs the run's agent as a pyfunc model (Q-values and greedy action per observation) and
registers it in the Model Registry: by default under the study's name (the run's
``sweep.study`` tag), else the experiment's. ``best`` takes the study's settings
(``sweep.study_name=...``, ``sweep.storage=...``) like ``reproduce best``.
"""

from __future__ import annotations

from rltrain.config import ConfigError
from rltrain.tracking import RunNotFound, stored_run
from sweep.commands import Command
from sweep.engine.preflight import check_tracking
from sweep.engine.recorded import resolve


def run(cmd: Command) -> int:
    """Register a run's agent; print the version and how to load or watch it."""
    from rltrain.registry import register_run

    check_tracking(cmd.tracking_uri)
    run_id, here = resolve(cmd.target, cmd.overrides)
    uri = here.tracking.uri
    try:
        found = stored_run(uri, run_id)
        name = cmd.model_name or found.tags.get("sweep.study") or found.experiment
        version = register_run(uri, run_id, name)
    except RunNotFound as err:
        raise ConfigError(str(err)) from err
    print(f"registered run {run_id} as model {name} version {version}")
    print(f"  load:  mlflow.pyfunc.load_model(\"models:/{name}/{version}\")")
    print(f"  watch: python -m sweep watch models:/{name}/latest")
    return 0
