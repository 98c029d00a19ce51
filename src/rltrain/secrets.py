"""One masking point for secrets: URLs' passwords, secret query parameters, known secrets.

``mask_url(text)`` masks URLs' passwords and secret parameters in any text (a URL, an error
message, a whole traceback); ``mask(text)`` also masks the secrets seen in the command line,
the environment or a worker's arguments, for console output.
``report(err)`` prints an unexpected error as one masked line (the masked traceback with
``SWEEP_DEBUG=1``); ``masked_entry(fn)`` wraps a worker process's entry point so nothing it
raises or prints on the way out carries a secret. ``install_masking()`` masks what any
library warns (``warnings``) or logs (``logging``), in every process that calls it: the
command line's and each worker's.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import unquote

MASK = "***"
DEBUG_VAR = "SWEEP_DEBUG"  # SWEEP_DEBUG=1: full (masked) tracebacks
_SECRET_WORDS = "password|passwd|pwd|secret|token"
_MIN_LITERAL = 4  # shorter known secrets are not masked as bare words (too many false hits)

# user:password@ in anything URL-shaped: scheme://user:pw@host, a slash or the colon missing
# (scheme:/, scheme//, //), or no scheme at all (user:pw@host; there a password starting with
# '/' reads as scheme:/path, as in models:/name@alias, and is left to the form check:
# rltrain.urls). The password runs to the last '@' before whitespace, a quote, '?' or '#', so
# a raw '@', ':' or '/' in it is masked too; an empty user (postgresql://:pw@db/x) is covered.
_USER = r"[^\s:/?#@='\"<>\[\]]{0,256}"
_URL_PASSWORD = re.compile(
    rf"(?P<head>(?:[A-Za-z][\w+.-]{{0,64}}(?::/{{1,2}}|//)|//){_USER}:|{_USER}:(?!/))"
    r"(?P<pw>[^\s?#'\"]{0,256})(?P<tail>@)")
# ?password=..., &db_token=..., "pwd=..." in a DSN: any key containing one of the words.
_KEY_VALUE = re.compile(
    rf"(?P<key>\b[\w.-]*(?:{_SECRET_WORDS})[\w.-]*=)(?P<value>'[^']*'|\"[^\"]*\"|[^&\s#'\",;)\]}}]+)",
    re.IGNORECASE)
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN", re.IGNORECASE)  # not PWD, OLDPWD
_known: set[str] = set()  # secrets seen in argv, the environment or a worker's arguments

F = TypeVar("F", bound=Callable[..., Any])


def mask_url(text: str) -> str:
    """``text`` with every URL password and secret query/DSN value replaced: safe for what is
    stored (params, config files), since it never touches anything else."""
    text = _URL_PASSWORD.sub(rf"\g<head>{MASK}\g<tail>", text)
    return _KEY_VALUE.sub(rf"\g<key>{MASK}", text)


_SCHEME_PREFIX = re.compile(r"[A-Za-z][\w+.-]{0,64}(?::/{0,2}|//)|//")


def mask_login(url: str) -> str:
    """A value meant as one URL, however malformed (the form check's message): ``mask_url``,
    and everything between its scheme and its last '@' replaced (``htp://***@host``,
    ``user:***@host``), so no password is shown whatever the value's shape."""
    head, at, host = url.rpartition("@")
    if not at:
        return mask_url(url)
    prefix = _SCHEME_PREFIX.match(head)
    return mask_url(f"{prefix.group(0) if prefix else ''}{MASK}@{host}")


def mask(text: str) -> str:
    """``mask_url``, and every known secret wherever it appears: for console output (a weak
    password that is also a common word may mask that word too)."""
    text = mask_url(text)
    for secret in sorted(_known, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def register_secrets(text: str) -> None:
    """Remember the passwords of URLs in ``text`` (and their decoded forms), so that they are
    masked even where they appear outside a URL (a driver's error message, say)."""
    found = [m.group("pw") for m in _URL_PASSWORD.finditer(text)]
    found += [m.group("value").strip("'\"") for m in _KEY_VALUE.finditer(text)]
    for secret in found:
        for form in (secret, unquote(secret)):
            if len(form) >= _MIN_LITERAL and form != MASK:
                _known.add(form)


def forget_secrets() -> None:
    """Drop the remembered secrets (tests)."""
    _known.clear()


def register_environment() -> None:
    """Remember secrets from ``sys.argv`` and from environment variables named like one
    (PGPASSWORD, MLFLOW_TRACKING_PASSWORD, ..._TOKEN) or holding a URL with a password."""
    register_secrets(" ".join(sys.argv))
    for name, value in os.environ.items():
        if _SECRET_NAME.search(name) and len(value) >= _MIN_LITERAL:
            _known.add(value)
        elif "@" in value:  # a login in a URL, well-formed or not
            register_secrets(value)


def debug() -> bool:
    return os.environ.get(DEBUG_VAR, "") not in ("", "0")


def one_line(err: BaseException) -> str:
    """``TypeName: first line of the message``, masked."""
    lines = str(err).strip().splitlines()
    return mask(f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__)


def report(err: BaseException, prefix: str = "") -> int:
    """Print an unexpected error as one masked ``error:`` line on stderr (preceded by the
    masked traceback when ``SWEEP_DEBUG=1``); return exit code 1."""
    if debug():
        text = "".join(traceback.format_exception(err))
        print(mask(text).rstrip(), file=sys.stderr)
    else:
        print(f"error: {prefix}{one_line(err)} (SWEEP_DEBUG=1 shows the traceback)",
              file=sys.stderr)
    return 1


_installed = False


def install_masking() -> None:
    """Mask every warning and log record of this process, whichever library emits it (MLflow,
    urllib3, SQLAlchemy, Optuna ...) and whichever handler prints it: log records as they
    are made (``logging.setLogRecordFactory``: message, traceback, stack), warnings as they
    are formatted (``warnings.formatwarning``, also used by ``logging.captureWarnings``).
    Idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    make_record = logging.getLogRecordFactory()

    def masked_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return _mask_record(make_record(*args, **kwargs))

    logging.setLogRecordFactory(masked_record)
    format_warning = warnings.formatwarning

    def masked_warning(message: Warning | str, category: type[Warning], filename: str,
                       lineno: int, line: str | None = None) -> str:
        return mask(format_warning(message, category, filename, lineno, line))

    warnings.formatwarning = masked_warning


def _mask_record(record: logging.LogRecord) -> logging.LogRecord:
    """The record with its message (formatted with its arguments), traceback and stack
    masked; a record whose message cannot be formatted is left for its handler to report."""
    try:
        text = record.getMessage()
    except Exception:
        return record
    masked_text = mask(text)
    if masked_text != text:
        record.msg, record.args = masked_text, ()
    if record.exc_info and record.exc_info[1] is not None:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = mask(text)  # what Formatter prints instead of formatting exc_info
    if record.stack_info:
        record.stack_info = mask(record.stack_info)
    return record


class MaskedTraceback(Exception):
    """The masked text of an original traceback, kept as the cause of a masked error."""


def masked(err: BaseException) -> BaseException:
    """``err`` itself when nothing in its traceback needs masking, else a copy of the same type
    (a RuntimeError when that is impossible) with the masked message, whose cause holds the
    masked original traceback."""
    text = "".join(traceback.format_exception(err))
    if mask(text) == text:
        return err
    message = mask(str(err))
    try:
        copy = type(err)(message)
        if str(copy) != message:
            raise TypeError
    except Exception:
        copy = RuntimeError(f"{type(err).__name__}: {message}")
    copy.__cause__ = MaskedTraceback("\n" + mask(text))
    copy.__suppress_context__ = True
    return copy


def masked_entry(fn: F | None = None, *, exit_on_error: bool = False) -> Any:
    """Wrap a worker process's entry point: secrets in its arguments are registered, and an
    exception leaves it masked (see ``masked``), so a parent that prints it, or a pool that
    pickles its traceback, never shows a secret.

    Decorate the function where it is defined (``@masked_entry``), so a spawned process
    unpickles the wrapped function by its name.
    ``exit_on_error=True`` (a ``multiprocessing.Process`` target, whose own handler would
    print the whole traceback): print one masked ``error:`` line instead and exit with code 1.
    """
    def wrap(func: F) -> F:
        @functools.wraps(func)
        def entry(*args: Any, **kwargs: Any) -> Any:
            install_masking()
            with contextlib.suppress(Exception):  # an argument whose repr fails
                register_secrets(repr(args) + repr(kwargs))
            try:
                return func(*args, **kwargs)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as err:
                if exit_on_error:
                    sys.exit(report(err, prefix=f"{func.__name__}: "))
                safe = masked(err)
                if safe is err:
                    raise
            raise safe  # outside the handler: the unmasked original is not its context

        return entry  # type: ignore[return-value]

    return wrap(fn) if fn is not None else wrap
