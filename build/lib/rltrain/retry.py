"""Waiting out a server's outage: retry a call with backoff for a bounded time.

The bound runs from the start of the outage, not from each call: when a server has been
failing for ``SWEEP_TRACKING_WAIT`` seconds (120 by default), every further call to it
gets one attempt, so a trial that gives up (its run ending FAILED, its parent tagged) does
not wait the bound again for each call on its way out. A success ends the outage.

The first failure of an outage prints one warning line, and the recovery one more; both
name the server with its password masked.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from rltrain.secrets import mask

T = TypeVar("T")
WAIT_VAR = "SWEEP_TRACKING_WAIT"  # seconds to wait for a tracking server that stops answering
DEFAULT_WAIT = 120.0
FIRST_DELAY, MAX_DELAY = 1.0, 5.0  # seconds between attempts: 1, 2, 4, 5, 5 ...

_down_since: dict[str, float] = {}  # server -> when it started failing (time.monotonic)
_lock = threading.Lock()  # the metrics sender thread and the training thread share servers


class ServerUnavailable(ConnectionError):
    """A server did not answer for the whole bound."""


def wait_seconds() -> float:
    """``SWEEP_TRACKING_WAIT`` (seconds, >= 0), else 120."""
    text = os.environ.get(WAIT_VAR, "").strip()
    try:
        value = float(text) if text else DEFAULT_WAIT
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(f"{WAIT_VAR}={text}: must be a number of seconds >= 0")
    return value


def retrying(call: Callable[[], T], *, server: str, what: str,
             transient: Callable[[BaseException], bool],
             before_retry: Callable[[], T | None] | None = None) -> T:
    """``call()``; while it raises an error that ``transient`` accepts, call it again after
    1, 2, 4, 5, 5 ... s, until ``server`` has failed for ``wait_seconds()`` in all; then raise
    ServerUnavailable (caused by the last error). ``before_retry`` may return the result
    instead (a create whose answer was lost may have happened: look for it first)."""
    delay, attempt = FIRST_DELAY, 0
    while True:
        try:
            result = before_retry() if attempt and before_retry is not None else None
            if result is None:
                result = call()
        except Exception as err:
            if not transient(err):
                raise
            bound = wait_seconds()
            now = time.monotonic()
            with _lock:
                first = server not in _down_since
                since = _down_since.setdefault(server, now)
            if first:
                print(f"warning: {mask(server)} does not answer ({cause(err)}); waiting up to "
                      f"{bound:.0f} s for it ({WAIT_VAR})", file=sys.stderr)
            left = since + bound - now
            if left <= 0:
                raise ServerUnavailable(f"{mask(server)} did not answer for {bound:.0f} s "
                                        f"({WAIT_VAR}); {what} failed: {cause(err)}") from err
            time.sleep(min(delay, left))
            delay, attempt = min(delay * 2, MAX_DELAY), attempt + 1
            continue
        with _lock:
            since = _down_since.pop(server, None)
        if since is not None:
            print(f"{mask(server)} answers again (after {time.monotonic() - since:.0f} s)",
                  file=sys.stderr)
        return result


def cause(err: BaseException) -> str:
    """The root cause of a failed request in a few words, masked."""
    text = str(err)
    for marker in ("[Errno", "Read timed out", "Name or service not known", "Failed to resolve",
                   "Connection aborted", "RemoteDisconnected", "error code"):
        if marker in text:
            text = text[text.index(marker):]
            return mask(text.split("'")[0].split('"')[0].split(". Response body")[0]
                        .rstrip(").:"))
    return mask(f"{type(err).__name__}: {text.splitlines()[0] if text else ''}")[:300]
