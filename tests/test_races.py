"""Races and silently ignored settings: folders, retried trials, concurrent rechecks, reused
pids, a searched or recorded ``train.threads`` (real stores, no training unless said)."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from rltrain.run import output_dir
from sweep import space as space_
from sweep import study as study_
from sweep.settings import plan
from sweep.storage import open_storage
from sweep.trial import seeds_of
from tests.test_sweep import TINY as SWEEP
from tests.test_sweep import load


def test_runs_started_in_the_same_second_get_their_own_folders(tiny, workdir: Path) -> None:
    """Eight runs asking for an output folder at once (as ``evaluate``'s seeds do) each get
    a new, existing folder of their own."""
    cfg, barrier, got = tiny(), threading.Barrier(8), []

    def ask() -> None:
        barrier.wait()
        got.append(output_dir(cfg, root=workdir / "outputs"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 8 and all(p.is_dir() for p in got)
    assert output_dir(cfg, root=workdir / "outputs") not in got  # a later one too


def test_a_retried_trial_trains_in_its_own_folder(tracking_uri: str, client: MlflowClient,
                                                  workdir: Path) -> None:
    """A trial whose worker looks gone is retried with the same parameters and seeds, but
    its seeds train in the retry's own folder: the original worker may still be writing in
    its folder (a heartbeat lost to the network, a pid the journal no longer recognises)."""
    p = plan([*SWEEP, f"tracking.uri={tracking_uri}", "sweep.n_trials=1", "sweep.max_retry=1"])
    study = study_.create_study(p, open_storage(p))
    gone = study.ask()
    space_.suggest(gone, p.space)
    for key, value in {"pid": os.getpid(), "host": socket.gethostname(),
                       "process": "boot:1"}.items():  # its pid is another process's now
        gone.set_user_attr(key, value)
    (first,) = seeds_of(p, gone.number)
    original = p.folder / "trial-000" / f"seed-{first}"
    original.mkdir(parents=True)
    (original / "dqn_log.json").write_text("the original worker's")

    outcome = study_.run(p)
    assert outcome.exit_code == 0, outcome.message
    retry = load().trials[1]
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["retry_of"] == 0
    assert retry.params == gone.params and retry.user_attrs["seeds"] == [first]
    seed_run = client.get_run(retry.user_attrs["run_id"])
    assert Path(seed_run.data.tags["output_dir"]) == (
        p.folder / "trial-001" / f"seed-{first}").resolve()
    assert seed_run.info.run_name == f"trial-001-seed-{first}"
    assert (original / "dqn_log.json").read_text() == "the original worker's"
    assert sorted(q.name for q in original.iterdir()) == ["dqn_log.json"]
