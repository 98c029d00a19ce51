"""One masking point: URL passwords, secret parameters, known secrets, errors on the way out."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from rltrain import secrets
from rltrain.config import mask_url as config_mask_url
from rltrain.secrets import mask, mask_url, masked_entry, register_secrets, report
from tests.conftest import run_python


@pytest.fixture(autouse=True)
def _forget() -> Iterator[None]:
    yield
    secrets.forget_secrets()


@pytest.mark.parametrize(("text", "masked"), [
    ("postgresql://bob:s3cret@db:5432/x", "postgresql://bob:***@db:5432/x"),
    ("postgresql://:pw@db/x", "postgresql://:***@db/x"),                       # empty user
    ("http://u:p%40ss@h:5000/api", "http://u:***@h:5000/api"),                  # URL-encoded
    ("postgresql://u:p@ss@db/x", "postgresql://u:***@db/x"),                    # a raw '@'
    ("http://h:5000/api?user=u&password=hunter2&x=1", "http://h:5000/api?user=u&password=***&x=1"),
    ("mysql://db/x?db_passwd=abc;pwd=def", "mysql://db/x?db_passwd=***;pwd=***"),
    ("https://h/?access_token=T0K3N#frag", "https://h/?access_token=***#frag"),
    ("host=db password='p w' dbname=x", "host=db password=*** dbname=x"),      # a libpq DSN
    ("File x, in y\n  requests to http://a:PASSWORD@127.0.0.1:1/api/2.0 failed: "
     "'sqlite:///m.db' and https://b:other@h/p",
     "File x, in y\n  requests to http://a:***@127.0.0.1:1/api/2.0 failed: "
     "'sqlite:///m.db' and https://b:***@h/p"),                                # embedded
])
def test_mask_url_masks_every_form(text: str, masked: str) -> None:
    assert mask_url(text) == masked
    assert config_mask_url is mask_url  # rltrain.config.mask_url still importable


@pytest.mark.parametrize("text", [
    "postgresql://sweep@DBHOST/optuna", "http://127.0.0.1:5000/#/experiments/1",
    "sqlite:///mlflow.db", "http://host:5000?a=b@c", "agent.lr=0.001 user@example.org"])
def test_mask_url_leaves_the_rest_alone(text: str) -> None:
    assert mask_url(text) == text


def test_known_secrets_are_masked_outside_urls() -> None:
    register_secrets("sweep.storage=postgresql://u:p%40ssw0rd@db/x")
    assert mask("FATAL: password p@ssw0rd rejected") == "FATAL: password *** rejected"
    assert mask("raw p%40ssw0rd") == "raw ***"
    assert mask_url("raw p%40ssw0rd") == "raw p%40ssw0rd"  # what is stored is left alone


def fails(url: str) -> None:
    raise ValueError(f"cannot reach {url}")


@masked_entry
def fails_in_a_pool(url: str) -> None:  # decorated where defined: pickled by reference
    fails(url)


def test_masked_entry_masks_what_a_worker_raises() -> None:
    entry, url = masked_entry(fails), "http://u:" + "PASSWORD" + "@h:1/api"
    with pytest.raises(ValueError) as caught:
        entry(url)  # (a traceback shows source lines: keep the secret off this one)
    text = "".join(traceback.format_exception(caught.value))
    assert "PASSWORD" not in text and "http://u:***@h:1/api" in text
    assert str(caught.value) == "cannot reach http://u:***@h:1/api"
    assert caught.value.__context__ is None  # the unmasked original is not kept around


def test_masked_entry_keeps_harmless_errors_as_they_are() -> None:
    with pytest.raises(ValueError, match="cannot reach nowhere") as caught:
        masked_entry(fails)("nowhere")
    assert caught.value.__cause__ is None


def test_a_pool_worker_sends_back_no_secret() -> None:
    """concurrent.futures pickles the worker's formatted traceback: it must be masked."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        future = pool.submit(fails_in_a_pool, "postgresql://u:" + "PASSWORD@db/x")
        with pytest.raises(ValueError) as caught:
            future.result()
    text = "".join(traceback.format_exception(caught.value))
    assert "PASSWORD" not in text and "postgresql://u:***@db/x" in text


def test_report_is_one_masked_line_or_a_masked_traceback(capsys, monkeypatch) -> None:
    err = RuntimeError("boom at http://u:PASSWORD@h:1\nsecond line")
    monkeypatch.delenv("SWEEP_DEBUG", raising=False)
    assert report(err) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: RuntimeError: boom at http://u:***@h:1")
    monkeypatch.setenv("SWEEP_DEBUG", "1")
    try:
        raise err
    except RuntimeError as raised:
        report(raised)
    shown = capsys.readouterr().err
    assert "Traceback" in shown and "PASSWORD" not in shown and "second line" in shown


PROCESS_TARGET = """
import multiprocessing, sys
from rltrain.secrets import masked_entry

@masked_entry(exit_on_error=True)
def work(url):
    raise ConnectionError(f"lost {url}")

if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=work, args=("http://u:PASSWORD@h:1",))
    p.start(); p.join(); sys.exit(p.exitcode)
"""


def test_a_process_target_prints_one_masked_line(workdir: Path) -> None:
    (workdir / "target.py").write_text(PROCESS_TARGET)
    proc = run_python("target.py", cwd=workdir, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: work: ConnectionError: lost http://u:***@h:1 (SWEEP_DEBUG=1 shows the traceback)"]


def test_an_unexpected_error_in_the_cli_is_one_masked_line(workdir: Path) -> None:
    probe = ("import sys\nimport sweep.__main__ as m\n"
             "def boom(cmd):\n    raise OSError('disk full under http://u:PASSWORD@h:1')\n"
             "m.COMMANDS['train'] = boom\nsys.exit(m.main(['train.nb_steps=5']))\n")
    proc = run_python("-c", probe, cwd=workdir, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: OSError: disk full under http://u:***@h:1 (SWEEP_DEBUG=1 shows the traceback)"]
