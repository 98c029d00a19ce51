"""``python -m sweep worker [overrides]``: join an existing study (the same line as its
multirun; from another machine: ``sweep.storage=postgresql://USER@HOST/DB``) and run
trials until ``sweep.n_trials`` is reached over all workers. A worker does not recheck.
"""

from __future__ import annotations

from sweep.commands import Command
from sweep.engine.preflight import check_tracking


def run(cmd: Command) -> int:
    """Join the study and run trials; 0 done, 1 failures, 130 Ctrl-C."""
    check_tracking(cmd.tracking_uri)
    from sweep.engine.invocation import run as invoke
    from sweep.engine.settings import plan
    from sweep.present import report

    return invoke(plan(cmd.overrides), report, join=True).tell()
