"""``python -m sweep [COMMAND] [overrides]``: train one agent, or run a sweep.

Commands (each has its own ``--help``; sweep/cli.py holds the grammar, sweep/commands/ a
module per command):
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

from sweep.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
