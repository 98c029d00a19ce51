"""The commands of ``python -m sweep``: a module per command (train.py, multirun.py,
worker.py, best.py, reproduce.py, evaluate.py, watch.py, register.py, ui.py, studies.py;
show.py answers ``--info`` and ``--cfg job``), each with ``run(cmd) -> exit code``.

sweep/cli.py parses the command line into the :class:`Command` every one of them receives:
the command's own options already typed and checked. A command module imports the engine
(sweep/engine/), the presentation (sweep/present/) and the library (rltrain), never
another command.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Command:
    """A parsed command line: the command, its Hydra overrides and its options, typed."""

    name: str
    overrides: list[str] = field(default_factory=list)  # key=value, +key=value, group=option
    tracking_uri: str = ""    # the line's last tracking.uri=, else MLFLOW_TRACKING_URI
    config_dir: str = ""      # --config-dir DIR: the user's config folder, searched first
    cfg: str = ""             # train, multirun, worker --cfg job
    info: str = ""            # train, multirun, worker --info [groups|searches|all]
    target: str = ""          # reproduce, evaluate, watch, register: RUN_ID or best
    as_json: bool = False     # best --json
    export: str = ""          # best export=NAME
    seeds: int = 5            # evaluate seeds=N
    jobs: int = 2             # evaluate jobs=N (min(2, seeds) unless given)
    threshold: float | None = None  # evaluate threshold=X (None: the env's reward_threshold)
    first: int = 0            # evaluate first=I: start at the I-th fresh seed
    episodes: int = 1         # watch episodes=N
    model_name: str = ""      # register name=NAME (empty: the study's, else the experiment's)
    port: int = 5000          # ui --port
    delete: str | None = None  # studies delete NAME
    yes: bool = False         # studies delete --yes
    storage: str = ""         # studies sweep.storage=URL
    sweep_dir: str = ""       # studies sweep.dir=DIR
