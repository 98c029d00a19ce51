"""``python -m sweep multirun [overrides]`` (also ``-m``, ``--multirun``): create or resume
an Optuna study and run its trials, then recheck the leaders on fresh seeds.

The invocation is sweep/engine/invocation.py's; what it shows and records beside its
trials is sweep/present/report.py's.
"""

from __future__ import annotations

from sweep.commands import Command
from sweep.engine.preflight import check_tracking


def run(cmd: Command) -> int:
    """Run what is left of the study's ``sweep.n_trials``; 0 done, 1 failures, 130 Ctrl-C."""
    check_tracking(cmd.tracking_uri)
    from sweep.engine.invocation import run as invoke
    from sweep.engine.settings import plan
    from sweep.present import report

    return invoke(plan(cmd.overrides), report).tell()
