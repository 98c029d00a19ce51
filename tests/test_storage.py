"""Which storages keep ``sweep.n_trials`` exact, and the note on those that do not."""

from __future__ import annotations

import pytest

from sweep.settings import plan
from sweep.storage import budget_note


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
