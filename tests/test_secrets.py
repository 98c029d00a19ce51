"""One masking point: URL passwords, secret parameters, known secrets, errors on the way out."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import re
import string
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from rltrain import secrets
from rltrain.config import ConfigError
from rltrain.config import mask_url as config_mask_url
from rltrain.secrets import mask, mask_login, mask_url, masked_entry, register_secrets, report
from rltrain.urls import NETWORK, TRACKING_SCHEMES, check_url
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


@pytest.mark.parametrize(("text", "masked"), [
    ("tracking.uri=http:/user:pw1234@host:5000", "tracking.uri=http:/user:***@host:5000"),
    ("http//user:pw1234@host", "http//user:***@host"),                          # no colon
    ("htp://user:pw1234@host", "htp://user:***@host"),                          # a typo
    ("postgresql:/u:pw1234@db/x", "postgresql:/u:***@db/x"),
    ("sweep.storage=postgresql//u:pw1234@db/x", "sweep.storage=postgresql//u:***@db/x"),
    ("tracking.uri=user:pw1234@host", "tracking.uri=user:***@host"),            # no scheme
    ("postgresql://u:p/w:x@y@db/x", "postgresql://u:***@db/x"),                 # '/', ':', '@'
    ("//u:/pw1234@host", "//u:***@host"),
])
def test_mask_url_masks_malformed_urls(text: str, masked: str) -> None:
    assert mask_url(text) == masked


def test_mask_url_leaves_a_models_alias_alone() -> None:
    """scheme:/path@alias has no login (MLflow's models:/name@alias)."""
    assert mask_url("models:/dqn-cartpole@champion") == "models:/dqn-cartpole@champion"


@dataclass
class Shape:
    """A URL-shaped text with a login: where it sits, and what masking must leave of it."""

    url: str
    text: str          # the URL in some context (a message, a repr, a traceback line)
    password: str
    masked: str       # what mask_url must give
    well_formed: bool  # scheme://user:password@host that the form check must let through


SCHEMES = ["http", "https", "postgresql", "postgresql+psycopg2", "mysql", "sqlite", "htp",
           "postgressql", "HTTP"]
SEPARATORS = ["://", ":/", "//", ""]  # "": no scheme at all (user:password@host)
PASSWORD_CHARS = string.ascii_letters + string.digits + "@:/%!$&()*+,;=~._-"
CONTEXTS = ["{}", "tracking.uri={}", "error: cannot reach {} (refused)", "('{}', 2)",
            "File x, line 3\n  requests to {}/api/2.0 failed"]


@st.composite
def shapes(draw: st.DrawFn, marked: bool = False) -> Shape:
    """Logins in URLs of every shape: well-formed, a slash or a colon missing, a typo in the
    scheme, no scheme; passwords with raw '@', ':', '/', percent escapes; a query with '@'.
    ``marked``: every password holds one of ``!$~`` (so it is no word of a message)."""
    scheme, sep = draw(st.sampled_from(SCHEMES)), draw(st.sampled_from(SEPARATORS))
    user = draw(st.text(string.ascii_letters + string.digits + "._-%", max_size=10))
    password = draw(st.text(PASSWORD_CHARS, min_size=4, max_size=24).map(
        lambda text: text.replace("%", "%40")))
    if marked:  # drawn in place, not filtered: a filter discards most passwords
        at = draw(st.integers(0, len(password)))
        password = password[:at] + draw(st.sampled_from("!$~")) + password[at:]
    host = draw(st.from_regex(r"[a-z][a-z0-9.-]{0,12}", fullmatch=True))
    port = draw(st.sampled_from(["", ":5000", ":1"]))
    path = draw(st.sampled_from(["", "/optuna", "/api/2.0", "/db?q=a@b", "?email=u@example.org"]))
    if not sep:
        scheme = ""
        assume(not password.startswith("/"))  # user:/x@y reads as scheme:/path (models:/x@y)
    rest, context = f"{host}{port}{path}", draw(st.sampled_from(CONTEXTS))
    head = f"{scheme}{sep}{user}:"
    url = f"{head}{password}@{rest}"
    text = context.format(url)
    masked = context.format(f"{head}***@{rest}")
    assume(password not in masked)  # only then can a test see the password leak
    well_formed = (sep == "://" and scheme.lower().split("+")[0] in TRACKING_SCHEMES
                   and scheme.lower().split("+")[0] in NETWORK
                   and "@" not in password and "/" not in password)
    return Shape(url, text, password, masked, well_formed)


@given(shapes())
def test_mask_url_masks_the_password_of_every_url_shape(shape: Shape) -> None:
    masked = mask_url(shape.text)
    assert masked == shape.masked
    assert shape.password not in masked
    assert mask_url(masked) == masked


@given(shapes())
def test_a_registered_password_is_masked_anywhere(shape: Shape) -> None:
    register_secrets(shape.text)
    try:
        assert shape.password not in mask(f"driver: password {shape.password} rejected")
    finally:
        secrets.forget_secrets()


@given(shapes(marked=True))  # a password with one of !$~: no word of a message ("data"...)
def test_the_form_check_passes_only_well_formed_urls_and_never_shows_a_password(
        shape: Shape) -> None:
    assert any(c in "!$~" for c in shape.password)
    try:
        check_url("tracking.uri", shape.url, TRACKING_SCHEMES)
    except ConfigError as err:
        assert not shape.well_formed, str(err)
        assert str(err).startswith("tracking.uri=")
        assert shape.password not in str(err)
    else:
        assert shape.well_formed, shape.url


@given(st.text(PASSWORD_CHARS + " ?#", max_size=40), st.text(PASSWORD_CHARS, max_size=20))
def test_mask_login_keeps_only_the_scheme_before_the_last_at(head: str, host: str) -> None:
    """The form check's message shows a value of any shape as ``scheme-ish prefix***@host``."""
    assume("@" not in host)
    before = mask_login(f"{head}@{host}").rpartition("@")[0]
    assert re.fullmatch(r"(?:[A-Za-z][\w+.-]*(?::/{0,2}|//)|//)?\*\*\*", before), before
    assert head.startswith(before.removesuffix(secrets.MASK))


def test_known_secrets_are_masked_outside_urls() -> None:
    register_secrets("sweep.storage=postgresql://u:p%40ssw0rd@db/x")
    assert mask("FATAL: password p@ssw0rd rejected") == "FATAL: password *** rejected"
    assert mask("raw p%40ssw0rd") == "raw ***"
    assert mask_url("raw p%40ssw0rd") == "raw p%40ssw0rd"  # what is stored is left alone


def test_a_malformed_url_in_the_environment_is_registered(monkeypatch) -> None:
    monkeypatch.setenv("SOME_STORE", "postgresql//u:" + "hunter22@db/x")  # no '://'
    secrets.register_environment()
    assert mask("driver: password hunter22 rejected") == "driver: password *** rejected"


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
    probe = ("import sys\nimport sweep.__main__ as m\nimport sweep.commands.train as train\n"
             "def boom(cmd):\n    raise OSError('disk full under http://u:PASSWORD@h:1')\n"
             "train.run = boom\nsys.exit(m.main(['train.nb_steps=5']))\n")
    proc = run_python("-c", probe, cwd=workdir, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: OSError: disk full under http://u:***@h:1 (SWEEP_DEBUG=1 shows the traceback)"]
