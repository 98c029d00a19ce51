"""Races and silently ignored settings: folders, retried trials, concurrent rechecks, reused
pids, a searched or recorded ``train.threads`` (real stores, no training unless said)."""

from __future__ import annotations

import threading
from pathlib import Path

from rltrain.run import output_dir


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
