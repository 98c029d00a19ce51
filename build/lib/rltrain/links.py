"""Links into MLflow's UI, in its "Model training" view (``workflowType=machine_learning``).

MLflow 3.17 opens an experiment in its GenAI view (traces, evaluation runs); training runs,
their charts and the parent/child tree show only in the "Model training" view, which the
URL parameter selects. A local store has no server: its links point at ``mlflow ui``'s
default address (``python -m sweep ui`` starts it).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

LOCAL_UI = "http://127.0.0.1:5000"
VIEW = "workflowType=machine_learning"


def ui_base(uri: str, local: str = LOCAL_UI) -> str:
    """The UI's address for a tracking URI: the server itself, user and password removed,
    for ``http(s)://``; ``local`` (where ``mlflow ui`` serves) for any local store."""
    if not uri.startswith(("http://", "https://")):
        return local.rstrip("/")
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def experiment_url(base: str, experiment_id: str) -> str:
    """The experiment's run list in the Model training view."""
    return f"{base}/#/experiments/{experiment_id}/runs?{VIEW}"


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """One run's page (for a sweep's parent run: its params, metrics, plots and children)."""
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{VIEW}"


def run_link(uri: str, run_id: str, local: str = LOCAL_UI) -> str:
    """The link that opens run ``run_id`` of the store at ``uri`` in the Model training view;
    ``""`` when the store cannot be asked (a link must never fail a command that worked)."""
    from rltrain.tracking import client_for

    try:
        experiment_id = client_for(uri).get_run(run_id).info.experiment_id
    except Exception:
        return ""
    return run_url(ui_base(uri, local), experiment_id, run_id)


def link_line(uri: str, run_id: str, what: str = "run") -> str:
    """``MLflow run: URL`` (with the command that serves a local store), or ``""``."""
    url = run_link(uri, run_id)
    if not url:
        return ""
    hint = "" if uri.startswith(("http://", "https://")) else "  (serve it: python -m sweep ui)"
    return f"MLflow {what}: {url}{hint}"
