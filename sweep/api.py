"""A study in a notebook: ``from sweep import api``.

    study = api.load("env=acrobot")                 # the multirun's line (or its words)
    study = api.load(study_name="big", storage="postgresql://sweep@db/optuna")
    study.trials                  # a pandas DataFrame, a row per trial (columns below)
    study.winner                  # sweep.engine.winner.Winner: trial, value, run_id, params ...
    study.winner.command          # the command that trains it again
    api.studies()                 # the studies of a storage, as ``python -m sweep studies``

``load`` finds a study exactly as ``best`` does (sweep.*, env=, search= of the line; the rest
is ignored) and creates nothing. The winner is sweep/engine/winner.py's (the recheck's, else
the best objective). ``study.optuna`` is the Optuna study itself.

Columns of ``study.trials`` (the same as the sweep's ``trials.csv``):

    number             the trial's number in the study (0, 1, ...)
    state              COMPLETE, PRUNED, FAIL, RUNNING or WAITING
    value              the objective: the seeds' scores aggregated (empty unless COMPLETE)
    last_step          the env step of the trial's last reported evaluation (where it was pruned)
    seeds              the seeds the trial trained on, one run each
    seed_scores        each seed's score, in the order of seeds
    test_mean_reward   the delivered agents' final test reward, mean over the seeds
    nb_steps           env steps trained, summed over the seeds
    train_seconds      training time, summed over the seeds
    run_id             the first seed's MLflow run (what reproduce retrains)
    seed_run_ids       each seed's MLflow run, in the order of seeds
    trial_run_id       the trial's own MLflow run (the seeds' parent)
    recheck_seeds      the fresh seeds of the recheck, if the trial was a leader
    recheck_tests      the delivered agents' test reward on each recheck seed
    recheck_mean       their mean
    recheck_run_ids    the recheck's MLflow run per seed
    winner             True for the study's winner (the recheck's, else the best objective)
    started            when the trial started (the worker's local time, as Optuna records it)
    completed          when it ended (empty while running)
    duration_seconds   completed - started
    error              why a FAIL trial failed
    overrides          the trial's training overrides (its config; a password masked)
    params_<key>       the sampled value of each searched key (params_agent.lr ...)
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sweep.engine import winner as winner_
from sweep.engine.storage import load_existing
from sweep.engine.winner import Winner
from sweep.present import table


@dataclass
class Study:
    """A loaded study: its Optuna study, its trials as a table and its winner."""

    optuna: Any

    @property
    def name(self) -> str:
        return str(self.optuna.study_name)

    @property
    def winner(self) -> Winner | None:
        """The winner and how to train it again (None until a trial completes)."""
        return winner_.of(self.optuna)

    @property
    def trials(self) -> Any:
        """The trials as a pandas DataFrame (see the module's docstring for the columns)."""
        best = self.winner
        return table.trials_frame(self.optuna, best.trial if best else None)


def load(line: str | Sequence[str] = "", *, study_name: str = "", storage: str = "",
         sweep_dir: str = "") -> Study:
    """The study a multirun line names (``"env=acrobot"``: ``dqn-acrobot``), or the one
    ``study_name``/``storage``/``sweep_dir`` (``sweep.*``) name; ``rltrain.config.ConfigError``
    if absent."""
    args = shlex.split(line) if isinstance(line, str) else list(line)
    extra = {"sweep.study_name": study_name, "sweep.storage": storage, "sweep.dir": sweep_dir}
    args += [f"{k}={v}" for k, v in extra.items() if v]
    from sweep.engine.settings import study_keys

    return Study(load_existing(study_keys(args)))


def studies(storage: str = "", sweep_dir: str = "") -> Any:
    """The studies of ``storage`` (else of the journals under ``sweep_dir``, ``multirun/``) as a
    DataFrame: name, storage, env, trial counts by state, best, winner, last_activity."""
    import pandas as pd

    from sweep.engine import catalog

    found = [r for where in catalog.storages(storage, sweep_dir) for r in catalog.rows(where)]
    return pd.DataFrame([{"name": r.name, "storage": r.storage, "env": r.env,
                          **{s.lower(): r.counts.get(s, 0)
                             for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")},
                          "best": r.best, "winner": r.winner, "last_activity": r.last_activity}
                         for r in found],
                        columns=["name", "storage", "env", "complete", "pruned", "fail",
                                 "running", "best", "winner", "last_activity"])

