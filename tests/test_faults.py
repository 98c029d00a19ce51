"""Faults without servers to set up: a tracking server that stays down (the wait is bounded,
once per outage), and third-party warnings and log lines that carry a password (masked)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rltrain.retry import ServerUnavailable
from rltrain.tracking import find_runs, tracked_run
from tests.conftest import run_python
from tests.servers import PASSWORD, free_port


def test_a_tracking_server_that_stays_down_fails_within_the_bound(monkeypatch, capfd) -> None:
    """Nothing listens on the port: the first call waits SWEEP_TRACKING_WAIT seconds and fails
    in one masked line; the next calls to that server fail at once (the outage's clock ran
    out), so a failing trial does not wait again for each call on its way out."""
    monkeypatch.setenv("SWEEP_TRACKING_WAIT", "2")
    url = f"http://sweep:{PASSWORD}@127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(ServerUnavailable, match=r"did not answer for 2 s .*Connection refused"), \
            tracked_run(url, "faults", "never"):
        pass
    assert 2 <= time.monotonic() - start < 10
    start = time.monotonic()
    with pytest.raises(ServerUnavailable):
        find_runs(url, "faults", {"sweep.study": "x"})
    assert time.monotonic() - start < 2
    err = capfd.readouterr().err
    assert err.count("does not answer") == 1 and "waiting up to 2 s" in err
    assert "http://sweep:***@127.0.0.1" in err and PASSWORD not in err


LEAKS = """
import logging, sys, warnings
from mlflow.tracking import MlflowClient
from rltrain.secrets import masked_entry

def leak(url):
    try:
        MlflowClient(url).search_experiments()
    except Exception as err:  # 'API request to http://sweep:PASSWORD@... failed ...'
        logging.getLogger("mlflow.store.artifact.http_artifact_repo").warning(
            "Failed to upload file model.h5: %s", err)  # as MLflow logs upload failures
        logging.getLogger("sqlalchemy.pool.impl.QueuePool").error(
            "Exception during reset or similar", exc_info=True)  # as SQLAlchemy's pool
        warnings.warn(f"could not reach the store: {err}")
    print("done")

(masked_entry(leak) if sys.argv[2] == "masked" else leak)(sys.argv[1])
"""


@pytest.mark.parametrize("masked", [True, False])
def test_warnings_and_log_lines_of_libraries_are_masked(masked: bool, tmp_path: Path) -> None:
    """A worker entry point (``masked_entry``) masks what MLflow, urllib3 and SQLAlchemy log
    and what ``warnings`` shows: a real MLflow error carrying the tracking URL's password,
    logged and warned as those libraries do. Unmasked (the control), the password shows."""
    url = f"http://sweep:{PASSWORD}@127.0.0.1:{free_port()}"
    (tmp_path / "leak.py").write_text(LEAKS)
    proc = run_python("leak.py", url, "masked" if masked else "plain", cwd=tmp_path,
                      timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "done" in proc.stdout, out[-3000:]
    for line in ("Failed to upload file model.h5: API request to http://sweep:",
                 "Exception during reset or similar", "Traceback (most recent call last)",
                 "UserWarning: could not reach the store: API request to http://sweep:"):
        assert line in out, out[-3000:]
    assert (PASSWORD in out) is not masked, out[-3000:]
    assert ("http://sweep:***@127.0.0.1" in out) is masked
