"""Which storages keep ``sweep.n_trials`` exact, and the note on those that do not."""

from __future__ import annotations

import pytest

from sweep.engine.settings import plan
from sweep.engine.storage import budget_note


@pytest.mark.parametrize("storage", ["", "multirun/x/study.log", "sqlite:///study.db",
                                     "postgresql://sweep:pw@db/optuna",
                                     "postgresql+psycopg2://sweep@db/optuna"])
def test_storages_with_an_exact_budget_need_no_note(storage: str, workdir) -> None:
    assert budget_note(plan([f"sweep.storage={storage}"] if storage else [])) == ""


@pytest.mark.parametrize("storage", ["mysql://sweep:pw1234@db/optuna",
                                     "mysql+pymysql://sweep@db/optuna", "mssql://db/optuna"])
def test_other_databases_say_the_budget_is_exact_within_one_invocation(storage: str,
                                                                       workdir) -> None:
    note = budget_note(plan([f"sweep.storage={storage}"]))
    assert note.startswith("note: sweep.storage=") and "within this invocation only" in note
    assert "pw1234" not in note


def test_a_journal_lock_left_by_a_killed_process_is_released(workdir) -> None:
    """A process killed while it holds Optuna's journal lock (kill -9 mid-append) leaves the
    lock behind; the next process takes over after the grace period instead of waiting on it
    forever (a relative journal path made the lock's age unreadable: a busy wait without end)."""
    import threading
    import time

    import optuna

    from sweep.engine.storage import JOURNAL_LOCK_GRACE, journal
    from tests.conftest import run_python

    path = "multirun/s/study.log"  # the default layout: relative to the working folder
    (workdir / "multirun/s").mkdir(parents=True)
    optuna.create_study(study_name="first", storage=journal(path))
    killed = run_python("-c", "import os; from sweep.engine.storage import journal; "
                        f"journal({path!r})._backend._lock.acquire(); os._exit(9)", cwd=workdir)
    assert killed.returncode == 9 and (workdir / f"{path}.lock").is_symlink()
    made: list[optuna.Study] = []
    start = time.monotonic()
    thread = threading.Thread(target=lambda: made.append(optuna.create_study(
        study_name="second", storage=journal(path))), daemon=True)
    thread.start()
    thread.join(timeout=JOURNAL_LOCK_GRACE + 30)
    assert made, "the lock of the killed process was never released"
    assert JOURNAL_LOCK_GRACE <= time.monotonic() - start < JOURNAL_LOCK_GRACE + 30
