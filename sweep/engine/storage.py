"""Where a study lives, and how workers on many machines share it without losing trials.

A journal file (the default) serves the workers of one machine; a database URL
(``sweep.storage=postgresql://USER@HOST/DB``) serves workers anywhere. With a database:

- every running trial writes a heartbeat (``sweep.heartbeat_interval``); a trial silent for
  ``sweep.grace_period`` seconds is FAILED by the next worker that claims a trial (which
  then ends its MLflow runs, outside the lock: this module never calls MLflow), and a copy
  with the same parameters and seeds is queued, up to ``sweep.max_retry`` times (Optuna's
  ``RetryHeartbeatStaleTrialCallback``);
- the budget check and ``ask`` run under a PostgreSQL advisory lock, so ``sweep.n_trials``
  stays exact over all machines. A file lock does the same for a journal or SQLite file, for
  the processes of one machine. Any other database (MySQL ...) has only the invocation's own
  lock: exact within one invocation, not across them (``budget_note`` says so at the start).

The password of a URL comes from the environment (``PGPASSWORD``) or a ``.pgpass`` file
(``PGPASSFILE``), or from the URL itself; it is masked wherever the URL is shown.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import importlib.util
import os
import socket
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, Trial, TrialState

from rltrain.config import ConfigError, mask_url
from sweep.engine.settings import Plan, study_keys
from sweep.engine.settings import plan as make_plan

CONNECT_TIMEOUT = 10  # seconds to reach a database server before giving up


def sqlalchemy_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 to SQLAlchemy 2.1; use psycopg2 when that is what
    is installed (it is in requirements.lock)."""
    scheme, rest = url.split("://", 1)
    if scheme in ("postgresql", "postgres") and importlib.util.find_spec("psycopg") is None:
        return f"postgresql+psycopg2://{rest}"
    return url


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT}, "pool_pre_ping": True}
    return {}


JOURNAL_LOCK_GRACE = 10  # s: a journal append holds Optuna's lock for milliseconds


def journal(path: str) -> Any:
    """Optuna's JournalStorage on the file ``path``, by its absolute path: Optuna's lock is a
    symlink to the journal, and its stale-lock check stats through that link, so a relative
    target (which resolves from the link's folder) never ages, and a lock left by a process
    killed while appending (kill -9) was waited on forever, busy. Absolute, a stale lock is
    released after ``JOURNAL_LOCK_GRACE`` seconds."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    target = str(Path(path).resolve())
    return JournalStorage(JournalFileBackend(
        target, lock_obj=JournalFileSymlinkLock(target, grace_period=JOURNAL_LOCK_GRACE)))


def open_storage(plan: Plan) -> Any:
    """A JournalStorage for a ``.log``/``.journal`` file; for a URL, an RDBStorage with
    heartbeats and the stale-trial handler."""
    if "://" not in plan.storage:
        Path(plan.storage).parent.mkdir(parents=True, exist_ok=True)
        return journal(plan.storage)
    s, url = plan.settings, sqlalchemy_url(plan.storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeats are "experimental"
        return RDBStorage(url, engine_kwargs=_engine_kwargs(url),
                          heartbeat_interval=s.heartbeat_interval, grace_period=s.grace_period,
                          heartbeat_stale_trial_callback=StaleTrials(plan))


def read_storage(where: str) -> Any:
    """A storage to list, read and delete studies in (no heartbeats, no stale-trial handler):
    an existing journal file, or a database URL (checked first: one masked line if it cannot
    be reached). ConfigError if there is nothing there."""
    if "://" not in where:
        if not Path(where).is_file():
            raise ConfigError(f"sweep.storage={where}: no journal file there")
        return journal(where)
    if where.startswith("sqlite:///") and not Path(where.removeprefix("sqlite:///")).is_file():
        raise ConfigError(f"sweep.storage={mask_url(where)}: no database file there")
    check_database(where, "sweep.storage")
    url = sqlalchemy_url(where)
    return RDBStorage(url, engine_kwargs=_engine_kwargs(url))


def load_existing(sweep_args: list[str]) -> optuna.Study:
    """The study that ``sweep.*``, ``env=`` and ``search=`` of a multirun line name, loaded
    without creating anything; ConfigError if absent."""
    p = make_plan(study_keys(sweep_args))
    name = p.settings.study_name
    where = mask_url(p.storage)
    if "://" not in p.storage and not Path(p.storage).exists():
        raise ConfigError(f"sweep.study_name={name}: no study at {where}")
    check_storage(p)  # an unreachable database: one line, not a traceback
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=name, storage=open_storage(p))
    except KeyError as err:
        raise ConfigError(f"sweep.study_name={name}: no such study in {where}") from err


def heartbeats(storage: Any) -> bool:
    return isinstance(storage, RDBStorage)


def check_storage(plan: Plan) -> None:
    """Connect once to a database storage before anything is created; ConfigError, one line
    with the password masked, if the server is unreachable or refuses the login."""
    if "://" in plan.storage:
        check_database(plan.storage, "sweep.storage")


def check_database(url: str, key: str) -> None:
    """Connect once to a database URL (within CONNECT_TIMEOUT seconds); ConfigError naming
    ``key``, with the password masked, if it cannot."""
    import sqlalchemy

    try:
        driver_url = sqlalchemy_url(url)
        engine = sqlalchemy.create_engine(driver_url, **_engine_kwargs(driver_url))
        try:
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as err:
        cause = getattr(err, "orig", None) or err
        lines = str(cause).strip().splitlines() or [type(cause).__name__]
        raise ConfigError(mask_url(f"{key}={url}: cannot connect: {lines[0]}")) from None


LOCK_TIMEOUT = 120  # seconds a worker waits for the claim lock before giving up


def _take_advisory_lock(connection: Any, key: dict[str, int], plan: Plan) -> None:
    """``pg_try_advisory_lock`` until it succeeds, for at most LOCK_TIMEOUT seconds (the lock
    is only held for a few queries: a longer wait means a stuck worker or server)."""
    import time

    from sqlalchemy import text

    deadline = time.monotonic() + LOCK_TIMEOUT
    while True:
        taken = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), key).scalar()
        connection.commit()
        if taken:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"sweep.study_name={plan.settings.study_name}: the claim lock "
                               f"was not free for {LOCK_TIMEOUT} s")
        time.sleep(0.2)


def _lock_file(plan: Plan) -> Path | None:
    if "://" not in plan.storage:
        return Path(f"{plan.storage}.claim")
    if plan.storage.startswith("sqlite:///") and ":memory:" not in plan.storage:
        return Path(f"{plan.storage.removeprefix('sqlite:///')}.claim")
    return None


def budget_note(plan: Plan) -> str:
    """A note for a storage on which ``sweep.n_trials`` is exact only within one invocation
    (a database other than PostgreSQL: no lock that other invocations see); else ""."""
    scheme = plan.storage.split("://", 1)[0].split("+", 1)[0].lower()
    if "://" not in plan.storage or scheme in ("postgresql", "postgres", "sqlite"):
        return ""
    return (f"note: sweep.storage={mask_url(plan.storage)}: sweep.n_trials is exact within "
            "this invocation only; workers of other invocations on this storage may run a few "
            "trials more (exact over every machine: PostgreSQL; on one machine: a journal or "
            "SQLite file)")


@contextmanager
def claim_lock(storage: Any, plan: Plan, fallback: Any = None) -> Iterator[None]:
    """Held while a worker fails stale trials, counts and asks: every worker of every
    invocation sees the same count. PostgreSQL: a session advisory lock (released by the
    server if the worker dies); a journal or SQLite file: ``flock`` on a file beside it
    (released by the kernel if the worker dies). Any other storage: the invocation's own
    ``fallback`` lock (a multiprocessing Lock), waited on for at most LOCK_TIMEOUT seconds."""
    if heartbeats(storage) and storage.engine.dialect.name == "postgresql":
        from sqlalchemy import text

        digest = hashlib.sha256(f"sweep:{plan.settings.study_name}".encode()).digest()
        key = {"key": int.from_bytes(digest[:8], "big", signed=True)}
        with storage.engine.connect() as connection:
            _take_advisory_lock(connection, key, plan)
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), key)
                connection.commit()
        return
    path = _lock_file(plan)
    if path is None:
        if fallback is None:
            yield
        elif not fallback.acquire(timeout=LOCK_TIMEOUT):
            raise TimeoutError(f"sweep.study_name={plan.settings.study_name}: the claim lock "
                               f"was not free for {LOCK_TIMEOUT} s (a worker died holding it?)")
        else:
            try:
                yield
            finally:
                fallback.release()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Heartbeat:
    """Records a running trial's heartbeat every ``interval`` seconds from a thread (database
    storage only; a no-op otherwise). The first beat is written by ``beat`` at claim time."""

    def __init__(self, storage: Any, trial: Trial, interval: int) -> None:
        self.storage, self.trial_id, self.interval = storage, trial._trial_id, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        if heartbeats(self.storage):
            self.storage.record_heartbeat(self.trial_id)

    def __enter__(self) -> Heartbeat:
        if heartbeats(self.storage):
            self._thread = threading.Thread(target=self._loop, name="sweep-heartbeat",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        warned = False
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception as err:  # a database blip: try again next beat
                if not warned:
                    print(f"warning: heartbeat not recorded: {mask_url(str(err))[:300]}",
                          file=sys.stderr)
                    warned = True


# -- trials whose worker is gone ------------------------------------------------------------

@dataclass
class Stale:
    """A trial FAILED because its worker is gone: what the orchestrator must tell MLflow
    (outside the claim lock: a slow tracking server must not stall every worker)."""

    number: int
    invocation: str
    reason: str
    sweep_gone: bool  # the trial's sweep process is gone too: its parent run ends KILLED


class StaleTrials:
    """Called for each trial whose worker is gone (no heartbeat, or a dead process on this
    host), after the trial became FAILED: records it in ``found`` (see :class:`Stale`),
    then queues a retry with the same parameters and seeds, up to ``sweep.max_retry``
    times."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.found: list[Stale] = []

    def __call__(self, study: optuna.Study, trial: FrozenTrial, reason: str = "") -> None:
        s, attrs = self.plan.settings, trial.user_attrs
        who = f"pid {attrs.get('pid', '?')} on {attrs.get('host', '?')}"
        reason = reason or f"no heartbeat for {s.grace_period} s: its worker ({who}) is gone"
        invocation = attrs.get("invocation", "")
        self.found.append(Stale(trial.number, invocation, reason,
                                bool(invocation) and _sweep_process_gone(attrs)))
        history = trial.system_attrs.get("retry_history", [])
        retried = len(history) < s.max_retry
        if retried:
            fresh = copy.deepcopy(trial)
            fresh.user_attrs = {"retry_of": attrs.get("retry_of", trial.number)}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                RetryHeartbeatStaleTrialCallback(max_retry=s.max_retry)(study, fresh)
        then = "queued again" if retried else f"not retried (sweep.max_retry={s.max_retry})"
        print(f"trial {trial.number} FAILED, {reason}; {then}", file=sys.stderr)


def _sweep_process_gone(attrs: dict[str, Any]) -> bool:
    """The worker was its sweep's own process, or that process on this host is gone."""
    pid, main = attrs.get("pid"), attrs.get("main_pid")
    if pid and pid == main:
        return True
    return (bool(main) and attrs.get("host") == socket.gethostname()
            and not same_process(main, attrs.get("main_process", "")))


def fail_stale_trials(study: optuna.Study, storage: Any, plan: Plan) -> list[Stale]:
    """FAIL the RUNNING trials whose worker is gone, hand each to :class:`StaleTrials`, and
    return them (their MLflow runs are the caller's to end, after the claim lock).

    A database storage goes by heartbeats (any machine); a journal by process ids (this
    host). Call it under :func:`claim_lock`.
    """
    if heartbeats(storage):
        callback = storage.get_heartbeat_stale_trial_callback()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        found, callback.found = callback.found, []
        return found
    host, handler = socket.gethostname(), StaleTrials(plan)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid, started = t.user_attrs.get("pid"), t.user_attrs.get("process")
        if t.user_attrs.get("host") != host or not pid:
            continue
        if same_process(pid, started or ""):
            continue
        reason = f"stale: worker process {pid} is gone" + (
            " (its pid now belongs to another process)" if process_alive(pid) else "")
        Trial(study, t._trial_id).set_user_attr("error", reason)
        study.tell(t.number, state=TrialState.FAIL)
        handler(study, t, reason)
    return handler.found


def process_identity(pid: int) -> str:
    """What a reused pid cannot fake: the boot and the process's start time (in clock ticks
    since boot, field 22 of /proc/PID/stat); "" where /proc cannot tell."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
        return f"{boot}:{stat.rsplit(')', 1)[1].split()[19]}"
    except (OSError, IndexError):
        return ""


def same_process(pid: int, identity: str) -> bool:
    """The process ``pid`` is alive and is the one recorded (``identity``, from
    :func:`process_identity`; "": recorded where /proc could not tell, so the pid decides)."""
    return process_alive(pid) and (not identity or process_identity(pid) == identity)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
