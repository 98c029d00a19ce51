"""The form of the URLs a command is given (``tracking.uri``, ``sweep.storage``), checked
before anything is written or connected to: a URL must be ``scheme://[user[:password]@]host
...`` with a scheme the key knows, or a plain local path. Anything else (a slash or a colon
missing, a typo in the scheme, ``user:password@host`` without a scheme, a raw '@' or '/' in
a password) is one ConfigError naming the key, the login masked (``rltrain.secrets``).
No MLflow, SQLAlchemy or TensorFlow import.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from rltrain.config import ConfigError
from rltrain.secrets import mask_login

DATABASES = ("postgresql", "postgres", "mysql", "mssql", "oracle")  # need a host (+driver ok)
# What MLflow accepts as a tracking URI (besides a local path), and Optuna as a storage URL.
TRACKING_SCHEMES = ("http", "https", "file", "sqlite", "postgresql", "mysql", "mssql",
                    "databricks", "databricks-uc", "uc")
STORAGE_SCHEMES = ("sqlite", *DATABASES)
NETWORK = ("http", "https", *DATABASES)  # schemes whose URL names a host
DEFAULT_STORE = "sqlite:///mlflow.db"  # MLflow's own default, relative to the working folder
ENCODE = "in a password, write '@' as %40, ':' as %3A and '/' as %2F"
_SCHEME = re.compile(r"(?P<scheme>[A-Za-z][\w+.-]*)(?P<sep>://|:/|:|//)")


def check_url(key: str, value: str, schemes: tuple[str, ...]) -> None:
    """ConfigError ``key=<masked value>: why`` unless ``value`` is empty, a local path, or a
    well-formed URL with one of ``schemes`` (``postgresql+psycopg2`` counts as postgresql)."""
    if why := problem(value, schemes):
        raise ConfigError(f"{key}={mask_login(value)}: {why}")


def problem(value: str, schemes: tuple[str, ...]) -> str:
    """Why ``value`` is not a usable URL or local path; empty if it is."""
    found = _SCHEME.match(value)
    scheme, sep = (found["scheme"], found["sep"]) if found else ("", "")
    base = scheme.lower().split("+", 1)[0]
    if sep == "://" and base not in schemes:
        return f"unknown scheme '{scheme}': one of {', '.join(schemes)}"
    if sep != "://" and (base not in schemes or base == "file"):  # file:/path is a file URI
        return "not a URL: a user and password need 'scheme://' in front" \
            if _has_login(value) else ""  # else a local path: no URL, no secret
    if sep != "://":
        missing = {":/": "a '/'", ":": "'//'", "//": "a ':'"}[sep]
        return f"not a URL: {missing} missing after '{scheme}' (write {scheme}://...)"
    return _authority_problem(value, base)


def _has_login(value: str) -> bool:
    """A ':' before an '@': what a password in a URL looks like."""
    return "@" in value and ":" in value.rpartition("@")[0]


def _authority_problem(url: str, base: str) -> str:
    """A URL naming a host must have one: at most one '@', before it (a query may hold more),
    and a numeric port; a file or sqlite URL names no host and no login."""
    parts = urlsplit(url)
    if base in ("sqlite", "file"):
        return "" if parts.netloc in ("", "localhost") else \
            f"a {base} URL names no host nor login: {base}:///path (three slashes)"
    if base not in NETWORK:
        return f"a {base} URL takes no user or password" if _has_login(url) else ""
    if parts.netloc.count("@") > 1:
        return f"more than one '@' before the host: {ENCODE}"
    if "@" in parts.path:  # a raw '/' or '@' in the password
        return f"an '@' after the host: {ENCODE}"
    try:
        parts.port  # noqa: B018 - raises ValueError when not a number
    except ValueError:
        return f"the port is not a number: {ENCODE}"
    if base in ("http", "https") and not parts.hostname:
        return "no host"
    return ""


def tracking_store(uri: str) -> str:
    """The tracking store a command uses: ``uri``, else ``MLFLOW_TRACKING_URI``, else
    MLflow's default local store."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI", "") or DEFAULT_STORE
