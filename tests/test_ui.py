"""MLflow UI links (Model training view, no password) and ``python -m sweep ui`` in a real
browser: headless Chromium must show the sweep's parent run (tests/check_ui.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rltrain.links import experiment_url, link_line, run_url, ui_base
from tests.check_ui import check, chromium

VIEW = "?workflowType=machine_learning"


def test_ui_base_removes_the_password_and_points_local_stores_at_mlflow_ui() -> None:
    assert ui_base("http://sweep:s3cret@mlflow.example:5000/") == "http://mlflow.example:5000"
    assert ui_base("https://user@host/mlflow") == "https://host/mlflow"
    assert ui_base("http://[::1]:5000") == "http://[::1]:5000"
    assert ui_base("") == "http://127.0.0.1:5000"
    assert ui_base("sqlite:///x/mlflow.db", "http://127.0.0.1:5001") == "http://127.0.0.1:5001"


def test_link_shapes() -> None:
    base = "http://127.0.0.1:5000"
    assert experiment_url(base, "3") == f"{base}/#/experiments/3/runs{VIEW}"
    assert run_url(base, "3", "abc") == f"{base}/#/experiments/3/runs/abc{VIEW}"


def test_link_line_names_the_run_and_never_fails(client, tracking_uri: str) -> None:
    exp = client.create_experiment("links")
    run = client.create_run(exp)
    line = link_line(tracking_uri, run.info.run_id)
    assert line.startswith(f"MLflow run: http://127.0.0.1:5000/#/experiments/{exp}/runs/")
    assert f"{run.info.run_id}{VIEW}" in line and "python -m sweep ui" in line
    assert link_line(tracking_uri, "no-such-run") == ""


@pytest.mark.skipif(chromium() is None and not os.environ.get("CI"),
                    reason="chromium not installed (make check-ui or make test installs it)")
def test_sweep_ui_in_a_real_browser(tmp_path: Path) -> None:
    browser = chromium()
    assert browser is not None, "CI must have chromium: make test installs it"
    shots = check(tmp_path / "work", tmp_path / "shots", browser)
    assert [p.name for p in shots] == ["runs.png", "sweep.png"]
