"""Worker processes that pay for their imports once.

A sweep's workers, the recheck's, ``evaluate``'s and the registration's come from one
forkserver per invocation that has imported TensorFlow, MLflow, Optuna and this program
(sweep/engine/preload.py) without running any of it: TensorFlow is imported, never initialised,
so each worker sizes its own thread pools and builds its own graph. A worker starts in
about a second instead of the ~10 s a fresh interpreter spends on the same imports, and
shares nothing else with its siblings or with the invocation's own process.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext

PRELOAD = ["sweep.engine.preload"]


def context(start: bool = False) -> BaseContext:
    """The multiprocessing context every worker of this program is started from; ``start``:
    start its forkserver now, so it imports TensorFlow while this process sets up the study
    and MLflow's parent run (the first worker then forks at once)."""
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    if start:
        forkserver.ensure_running()
    return ctx
