"""The checks a command makes before it starts work: the URLs of its line have a URL's form,
and its tracking store answers. Nothing here imports TensorFlow or creates anything."""

from __future__ import annotations

import os
from collections.abc import Sequence

from rltrain.urls import DATABASES, STORAGE_SCHEMES, TRACKING_SCHEMES, check_url

URL_KEYS = {"tracking.uri": TRACKING_SCHEMES, "sweep.storage": STORAGE_SCHEMES}


def key_of(override: str) -> str:
    """``+agent.lr=0.1`` -> ``agent.lr``."""
    return override.lstrip("+~").split("=", 1)[0]


def check_urls(overrides: Sequence[str]) -> None:
    """Every URL of the command line (``tracking.uri``, ``sweep.storage``; else
    ``MLFLOW_TRACKING_URI``) must have a URL's form: checked before anything is composed,
    printed or written (ConfigError naming the key, the login masked)."""
    for override in overrides:
        key = key_of(override)
        if key in URL_KEYS and "=" in override:
            check_url(key, override.split("=", 1)[1].strip("'\""), URL_KEYS[key])
    if not any(key_of(o) == "tracking.uri" for o in overrides):
        check_url("MLFLOW_TRACKING_URI", os.environ.get("MLFLOW_TRACKING_URI", ""),
                  TRACKING_SCHEMES)


def check_tracking(uri: str) -> None:
    """A tracking server or database must answer before any work starts: one masked
    ``error:`` line within seconds otherwise (a local store is not checked). A URI of the
    wrong form (see ``rltrain.urls``) is refused without a connection."""
    check_url("tracking.uri" if uri else "MLFLOW_TRACKING_URI",
              uri or os.environ.get("MLFLOW_TRACKING_URI", ""), TRACKING_SCHEMES)
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    scheme = uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else ""
    if scheme in ("http", "https"):
        from rltrain.tracking import check_server

        check_server(uri)
    elif scheme in DATABASES:
        from sweep.engine.storage import check_database

        check_database(uri, "tracking.uri")
