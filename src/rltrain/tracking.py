"""MLflow: run lifecycle, batched metrics, artifacts. The only module that knows MLflow.

A tracking server that stops answering is waited for (``rltrain.retry``): every call made
here to an http(s) server is retried with backoff while the server refuses connections,
times out or answers 5xx, for up to ``SWEEP_TRACKING_WAIT`` seconds (120) from the start
of the outage, then fails with ServerUnavailable. MLflow's own HTTP retries are off by
default in this project's processes (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``; its default,
7 retries with backoff factor 2, waits about 4 minutes, silently), and one request waits
at most ``MLFLOW_HTTP_REQUEST_TIMEOUT=30`` seconds (MLflow's default: 120): so one call
waits at most about SWEEP_TRACKING_WAIT + 30 s. Either variable set by the user wins.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # would show a password
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no calls home from a sweep
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # rltrain.retry waits instead
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")  # seconds per request (MLflow: 120)
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating tables..."

from mlflow.entities import Metric, Param, RunStatus, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from rltrain.config import ConfigError, mask_url  # noqa: E402
from rltrain.retry import cause, retrying  # noqa: E402
from rltrain.urls import tracking_store  # noqa: E402

METRIC_NAMES = {"mean_eps": "epsilon"}  # keras-rl2 metric name -> MLflow metric name
MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call
MODEL_TYPE = "dqn-agent"  # a logged model's type: search_logged_models(... model_type ...)
KEY_TAG = "rltrain.create_key"  # finds a run whose creation was answered by a dying server
T = TypeVar("T")


def transient(err: BaseException) -> bool:
    """A refused or broken connection, a timeout, or a 5xx/408/429 answer: the server may
    come back. Anything else (a 4xx: a bad request, a run that does not exist) is final."""
    import requests

    if isinstance(err, MlflowException):
        code = err.get_http_status_code()
        return code >= 500 or code in (408, 429)
    if isinstance(err, requests.exceptions.HTTPError) and err.response is not None:
        code = err.response.status_code
        return code >= 500 or code in (408, 429)
    return isinstance(err, requests.exceptions.ConnectionError | requests.exceptions.Timeout)


def call(uri: str, what: str, fn: Callable[[], T],
         before_retry: Callable[[], T | None] | None = None) -> T:
    """``fn()``, waiting out an outage of an http(s) tracking server (see the module's
    docstring); other stores are called once."""
    if not uri.startswith(("http://", "https://")):
        return fn()
    return retrying(fn, server=f"tracking server {uri}", what=what, transient=transient,
                    before_retry=before_retry)


class Tracker:
    """One MLflow run: buffered metrics, params, tags and artifacts.

    Metrics are sent in batches by one background thread, in order, so the training loop
    does not wait for the store (TensorFlow releases the GIL while it trains).
    """

    def __init__(self, client: MlflowClient, run_id: str, flush_seconds: float = 10.0) -> None:
        self.client = client
        self.uri = str(client.tracking_uri or "")
        self.run_id = run_id
        self.flush_seconds = flush_seconds
        self._buffer: list[Metric] = []
        self._last_flush = time.monotonic()
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-metrics")
        self._sent: list[Future[None]] = []
        self.status = "RUNNING"

    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [Param(k, mask_url(str(v))[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self._call("logging params", self.client.log_batch, self.run_id,
                       params=items[i:i + 100])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        tags_ = [RunTag(k, mask_url(str(v))) for k, v in tags.items()]
        self._call("setting tags", self.client.log_batch, self.run_id, tags=tags_)

    def log_metric(self, key: str, value: float, step: int) -> None:
        """Queue a metric; NaNs (no loss before warm-up) are skipped."""
        if value is None or math.isnan(value):
            return
        self._buffer.append(Metric(key, float(value), int(time.time() * 1000), int(step)))
        overdue = time.monotonic() - self._last_flush > self.flush_seconds
        if overdue or len(self._buffer) >= MAX_BATCH:
            self.flush()

    def flush(self, wait: bool = False) -> None:
        """Send the queued metrics; with ``wait``, block until the store has them all."""
        while self._buffer:
            batch, self._buffer = self._buffer[:MAX_BATCH], self._buffer[MAX_BATCH:]
            self._sent.append(self._sender.submit(self._call, "logging metrics",
                                                  self.client.log_batch, self.run_id,
                                                  metrics=batch))
        self._last_flush = time.monotonic()
        done = [f for f in self._sent if wait or f.done()]
        self._sent = [f for f in self._sent if f not in done]
        for future in done:
            future.result()  # re-raise a failed send here, in the caller's thread

    def log_artifacts(self, folder: Path, artifact_path: str | None = None) -> None:
        self._call("logging artifacts", self.client.log_artifacts, self.run_id, str(folder),
                   artifact_path)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._call("logging an artifact", self.client.log_artifact, self.run_id, str(path),
                   artifact_path)

    def start_model(self, name: str, params: Mapping[str, Any],
                    tags: Mapping[str, Any]) -> str:
        """Create an MLflow 3 logged model from this run (its Models tab); return its id.
        ``name`` empty: the run's name. Its files come with :meth:`finish_model`."""
        run = self._call("looking up the run", self.client.get_run, self.run_id)
        model = self._call("creating a logged model", self.client.create_logged_model,
                           run.info.experiment_id, name=name or run.info.run_name or None,
                           source_run_id=self.run_id,
                           params={k: mask_url(str(v))[:6000] for k, v in params.items()},
                           tags={k: mask_url(str(v)) for k, v in tags.items()},
                           model_type=MODEL_TYPE)
        return str(model.model_id)

    def finish_model(self, model_id: str, folder: Path, step: int,
                     metrics: Mapping[str, float]) -> None:
        """Upload the saved model ``folder``, link the model to this run as an output at
        ``step`` with ``metrics`` (what ``mlflow.pyfunc.log_model`` does for the active run),
        and mark it READY."""
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus

        self._call("logging the model's files", self.client.log_model_artifacts, model_id,
                   str(folder))
        self._call("linking the model", self.client.log_outputs, self.run_id,
                   [LoggedModelOutput(model_id, step)])
        now = int(time.time() * 1000)
        linked = [Metric(k, float(v), now, int(step), model_id=model_id)
                  for k, v in metrics.items() if v is not None and not math.isnan(v)]
        if linked:
            self._call("logging the model's metrics", self.client.log_batch, self.run_id,
                       metrics=linked)
        self._call("finalizing the model", self.client.finalize_logged_model, model_id,
                   LoggedModelStatus.READY)

    def end(self, status: str) -> None:
        """Flush and close the run with ``status`` (FINISHED, FAILED, KILLED)."""
        try:
            self.flush(wait=True)
        finally:
            self._sender.shutdown(wait=True)
            self._call("ending the run", self.client.set_terminated, self.run_id, status)
            self.status = status

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return call(self.uri, f"{what} (run {self.run_id})", lambda: fn(*args, **kwargs))


def local_file(uri: str) -> Path | None:
    """The SQLite file of a local tracking store (``uri`` empty: ``MLFLOW_TRACKING_URI``,
    else MLflow's default ./mlflow.db); None for a server or another database."""
    store = tracking_store(uri)
    if not store.startswith("sqlite:///"):
        return None
    name = store.removeprefix("sqlite:///").split("?", 1)[0]
    return None if name in ("", ":memory:") else Path(name)


def client_for(uri: str) -> MlflowClient:
    """An MlflowClient for ``uri`` (empty: MLflow's default local store). A local SQLite
    store is opened holding ``flock`` on its file, so the first process creates its tables
    while any other waits: two commands started at once in a fresh folder both created them,
    and one failed ("table experiments already exists"). SQLite's own locks are fcntl
    locks, which flock does not touch."""
    path = local_file(uri)
    if path is None:
        return MlflowClient(tracking_uri=uri or None)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:  # an empty file is a new SQLite database
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        return MlflowClient(tracking_uri=uri or None)


def check_server(uri: str, timeout: float = 10.0) -> None:
    """An http(s) tracking URI must answer one request at once (no retries, ``timeout``
    seconds), before anything is created; ConfigError, one line with the password masked.
    Other URIs (local stores) are not checked."""
    if not uri.startswith(("http://", "https://")):
        return
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request, verify_rest_response

    endpoint = "/api/2.0/mlflow/experiments/search"
    try:
        response = http_request(get_default_host_creds(uri), endpoint, "GET", max_retries=0,
                                timeout=timeout, params={"max_results": 1})
        verify_rest_response(response, endpoint)
    except Exception as err:
        raise ConfigError(f"tracking.uri={mask_url(uri)}: no MLflow tracking server answers "
                          f"there ({cause(err)})") from None


def experiment_id(client: MlflowClient, name: str) -> str:
    """Get or create the experiment (safe when parallel workers race to create it)."""
    uri, what = str(client.tracking_uri or ""), f"looking up experiment {name}"
    found = call(uri, what, lambda: client.get_experiment_by_name(name))
    if found is not None:
        return found.experiment_id
    try:
        return call(uri, f"creating experiment {name}", lambda: client.create_experiment(name))
    except MlflowException:
        found = call(uri, what, lambda: client.get_experiment_by_name(name))
        if found is None:
            raise
        return found.experiment_id


def find_runs(uri: str, experiment: str, tags: Mapping[str, Any], status: str | None = None,
              with_tags: bool = False) -> list[Any]:
    """Ids of the runs in ``experiment`` that carry every one of ``tags`` (and ``status``);
    ``with_tags``: ``(id, tags)`` pairs."""
    client = client_for(uri)
    found = call(uri, f"looking up experiment {experiment}",
                 lambda: client.get_experiment_by_name(experiment))
    if found is None:
        return []
    query = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
    if status:
        query += f" and attributes.status = '{status}'"
    found_runs = call(uri, "searching runs",
                      lambda: client.search_runs([found.experiment_id], query))
    if with_tags:
        return [(run.info.run_id, dict(run.data.tags)) for run in found_runs]
    return [run.info.run_id for run in found_runs]


def study_runs(uri: str, study: str) -> dict[str, int]:
    """How many runs carry tag ``sweep.study=STUDY``, by experiment name (a local SQLite
    store that does not exist is not created by looking: no runs)."""
    path = local_file(uri)
    if path is not None and not path.exists():
        return {}
    client = client_for(uri)
    experiments = call(uri, "listing experiments", client.search_experiments)
    counts: dict[str, int] = {}
    for experiment in experiments:
        found = call(uri, "searching runs", lambda e=experiment: client.search_runs(
            [e.experiment_id], f"tags.`sweep.study` = '{study}'", max_results=50000))
        if found:
            counts[experiment.name] = len(found)
    return counts


def tracker_for(uri: str, run_id: str) -> Tracker:
    """A Tracker for an existing run (to tag or end it from another process)."""
    return Tracker(client_for(uri), run_id)


@contextmanager
def tracked_run(uri: str, experiment: str, run_name: str, tags: Mapping[str, Any] | None = None,
                parent_run_id: str | None = None) -> Iterator[Tracker]:
    """Start a run; end it FINISHED, or FAILED with the error as a tag if anything raises."""
    client = client_for(uri)
    key = uuid.uuid4().hex
    all_tags = {"mlflow.runName": run_name, **(tags or {}), KEY_TAG: key}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    exp = experiment_id(client, experiment)

    def created_already() -> Any:
        """The run, if the server made it before the answer was lost (a retry would make
        a second one)."""
        found = client.search_runs([exp], f"tags.`{KEY_TAG}` = '{key}'")
        return found[0] if found else None

    run = call(uri, f"creating run {run_name}", lambda: client.create_run(
        exp, run_name=run_name, tags={k: mask_url(str(v)) for k, v in all_tags.items()}),
        before_retry=created_already)
    tracker = Tracker(client, run.info.run_id)
    try:
        yield tracker
    except BaseException as err:
        _end_failed(tracker, err)
        raise
    if tracker.status == "RUNNING":
        tracker.end(RunStatus.to_string(RunStatus.FINISHED))


def _end_failed(tracker: Tracker, err: BaseException) -> None:
    """Mark the run FAILED with the reason; never hide the original error."""
    try:
        reason = mask_url(f"{type(err).__name__}: {err}")[:5000]
        tracker.set_tags({"error": reason})
        tracker.end(RunStatus.to_string(RunStatus.FAILED))
    except Exception:  # the store itself may be what failed
        pass


class MetricsCallback:
    """Sends per-episode means of the agent's metrics and each evaluation to the Tracker."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.names: list[str] = []
        self._sums: list[float] = []
        self._counts: list[int] = []

    def set_model(self, agent: Any) -> None:
        self.names = [METRIC_NAMES.get(n, n) for n in agent.metrics_names]

    def on_episode_begin(self, episode: int, logs: dict[str, Any]) -> None:
        self._sums = [0.0] * len(self.names)
        self._counts = [0] * len(self.names)

    def on_step_end(self, step: int, logs: dict[str, Any]) -> None:
        for i, value in enumerate(logs["metrics"]):
            if value == value:  # skip NaN
                self._sums[i] += value
                self._counts[i] += 1

    def on_episode_end(self, episode: int, logs: dict[str, Any]) -> None:
        step = int(logs["nb_steps"])
        log = self.tracker.log_metric
        log("episode_reward", logs["episode_reward"], step)
        log("nb_episode_steps", logs["nb_episode_steps"], step)
        for name, total, count in zip(self.names, self._sums, self._counts, strict=True):
            if count:
                log(name, total / count, step)

    def on_evaluation_end(self, step: int, logs: dict[str, Any]) -> None:
        self.tracker.log_metric("eval/mean_reward", logs["mean_reward"], step)
        self.tracker.flush()  # evaluations are rare and worth seeing at once

    def on_train_end(self, logs: dict[str, Any]) -> None:
        self.tracker.flush(wait=True)


class RunNotFound(LookupError):
    """A run id, or an artifact of a run, that the tracking store does not have."""


@dataclass
class StoredRun:
    """What the store holds about a finished run."""

    run_id: str
    name: str
    status: str
    experiment: str
    tags: dict[str, str]


def stored_run(uri: str, run_id: str) -> StoredRun:
    """Look a run up; raise RunNotFound with one line if the store does not have it (a local
    SQLite store that does not exist is not created by looking)."""
    path = local_file(uri)
    if path is not None and not path.exists():
        raise RunNotFound(f"run {run_id}: not found, there is no tracking store at "
                          f"{mask_url(tracking_store(uri))} (give tracking.uri=...)")
    client = client_for(uri)
    try:
        run = call(uri, f"looking up run {run_id}", lambda: client.get_run(run_id))
    except MlflowException as err:
        raise RunNotFound(f"run {run_id}: not found in the tracking store "
                          f"{mask_url(uri) or '(local mlflow.db)'}") from err
    experiment = call(uri, f"looking up run {run_id}",
                      lambda: client.get_experiment(run.info.experiment_id)).name
    return StoredRun(run_id, run.info.run_name or "", run.info.status, experiment,
                     dict(run.data.tags))


def download_artifact(uri: str, run_id: str, path: str, folder: Path) -> Path:
    """Download one artifact of a run into ``folder``; RunNotFound if it has none."""
    client = client_for(uri)
    if path not in {item.path for item in client.list_artifacts(run_id)}:
        raise RunNotFound(f"run {run_id}: has no artifact {path}")
    folder.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(folder)))


def metric_history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """``[(step, value), ...]`` of a metric, in the order it was logged."""
    client = client_for(uri)
    history = call(uri, f"reading {key} of run {run_id}",
                   lambda: client.get_metric_history(run_id, key))
    return [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)]
