"""The MLflow boundary: reachability probe, quiet logs, and foreign exceptions as layerops errors."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy
import sqlalchemy.exc
import sqlalchemy.pool
from mlflow.exceptions import MlflowException

from layerops.errors import LayeropsError, NotFoundError, RepositoryError, RepositoryUnavailableError

PROBE_TIMEOUT_S = 3.0
"""Seconds a backend has to accept a TCP connection before it counts as unreachable."""

_DEFAULT_PORTS = {
    "http": 80,
    "https": 443,
    "postgresql": 5432,
    "postgres": 5432,
    "mysql": 3306,
    "mssql": 1433,
}
_UNAVAILABLE_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "ENDPOINT_NOT_FOUND"}
_NOISY_LOGGERS = ("alembic", "mlflow.store.db.utils", "mlflow.store.model_registry.abstract_store")


def quiet_mlflow_logs() -> None:
    """Keep MLflow's migration logs and artifact progress bars out of the user's terminal."""
    # Neither the progress bar nor the run links MLflow prints to stdout (which would corrupt a
    # CLI's JSON output) has a per-call switch; an explicit user setting still wins.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


def redact(uri: str) -> str:
    """The URI with any password replaced by `***`, fit for an error message."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def probe(uri: str) -> None:
    """Fail fast with `RepositoryUnavailableError` when a networked backend refuses connections."""
    try:
        parts = urlsplit(uri)
        scheme = parts.scheme.split("+", 1)[0].lower()
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise RepositoryUnavailableError(f"bad MLflow URI {redact(uri)}: {exc}") from exc
    if not host or scheme not in _DEFAULT_PORTS:
        return
    try:
        with socket.create_connection((host, port or _DEFAULT_PORTS[scheme]), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise RepositoryUnavailableError(
            f"cannot reach the MLflow backend at {redact(uri)}: {reason}"
        ) from exc


def probe_database(uri: str) -> None:
    """Fail fast with `RepositoryUnavailableError` when a SQL backend (or sqlite file) refuses a
    connection."""
    # MLflow itself retries engine creation ten times with growing sleeps (about 100 s).
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in {"postgresql", "postgres", "mysql", "mssql", "sqlite"}:
        return
    # sqlite too: a path that cannot be opened (a folder, no permission) is retried just as long.
    networked = scheme not in {"mssql", "sqlite"}
    connect_args = {"connect_timeout": int(PROBE_TIMEOUT_S)} if networked else {}
    try:
        engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool, connect_args=connect_args)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except ImportError as exc:
        raise RepositoryUnavailableError(
            f"cannot use MLflow backend {redact(uri)}: its database driver is not installed ({exc})"
        ) from exc
    except (sqlalchemy.exc.SQLAlchemyError, OSError, ValueError) as exc:
        detail = str(getattr(exc, "orig", None) or exc)
        raise RepositoryUnavailableError(
            f"cannot open the MLflow database at {redact(uri)}: {_first_line(detail)}"
        ) from exc


def _first_line(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def _is_connection_error(exc: BaseException) -> bool:
    # requests' ConnectionError is an OSError but not the builtin ConnectionError: match by name.
    kinds = (ConnectionError, TimeoutError, socket.gaierror, sqlalchemy.exc.OperationalError)
    name = type(exc).__name__
    return isinstance(exc, kinds) or "Connection" in name or "Timeout" in name


def _looks_unreachable(exc: MlflowException) -> bool:
    if exc.error_code in _UNAVAILABLE_CODES:
        return True
    cause: BaseException | None = exc.__cause__ or exc.__context__
    while cause is not None:
        if _is_connection_error(cause):
            return True
        cause = cause.__cause__ or cause.__context__
    text = str(exc.message)
    return "failed with exception" in text and ("Max retries" in text or "Connection" in text)


@contextmanager
def translated(uri: str, action: str, *, not_found: str | None = None) -> Iterator[None]:
    """Re-raise MLflow and driver exceptions from the block as layerops repository errors."""
    if uri.lower().startswith(("http://", "https://")):
        probe(uri)  # MLflow retries a refused HTTP connection for minutes: refuse in milliseconds
    try:
        yield
    except LayeropsError:
        raise
    except MlflowException as exc:
        if not_found is not None and exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFoundError(not_found) from exc
        if _looks_unreachable(exc):
            raise RepositoryUnavailableError(
                f"MLflow backend {redact(uri)} is unavailable ({action}): {_first_line(exc.message)}"
            ) from exc
        raise RepositoryError(f"{action} failed: {_first_line(exc.message)}") from exc
    except ImportError as exc:
        raise RepositoryUnavailableError(
            f"cannot use MLflow backend {redact(uri)}: a driver is not installed ({exc})"
        ) from exc
    except (OSError, sqlalchemy.exc.SQLAlchemyError) as exc:
        if _is_connection_error(exc):
            raise RepositoryUnavailableError(
                f"MLflow backend {redact(uri)} is unavailable ({action}): {_first_line(exc)}"
            ) from exc
        raise RepositoryError(f"{action} failed: {_first_line(exc)}") from exc
