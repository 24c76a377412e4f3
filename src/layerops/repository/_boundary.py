"""The MLflow boundary: process switches, reachability probes, and foreign exceptions (MLflow, drivers,
the artifact store's SDK) as one-line layerops errors."""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy
import sqlalchemy.exc
import sqlalchemy.pool
from mlflow.exceptions import MlflowException
from mlflow.telemetry import get_telemetry_client, set_telemetry_client

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
HTTP_RETRIES = 4
"""Retries of a tracking-server request that failed with HTTP 408, 429 or 5xx (about 30 s of
back-off) unless `MLFLOW_HTTP_REQUEST_MAX_RETRIES` says otherwise. MLflow's own default, 7, is
four minutes: what `layerops serve` or `train` took to report a server whose artifact storage
is down (the server answers 500 to every artifact request)."""
_UNAVAILABLE_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "ENDPOINT_NOT_FOUND"}
_STORAGE_SDKS = {"botocore", "boto3", "s3transfer"}
"""Packages whose exceptions are the artifact store's (MLflow lets them through untranslated)."""
_NOISY_LOGGERS = ("alembic", "mlflow.store.db.utils", "mlflow.store.model_registry.abstract_store")


def configure_mlflow() -> None:
    """Set MLflow's process-wide switches for layerops (an explicit user setting always wins):
    no artifact progress bars or run links on the user's terminal, failing tracking-server
    requests retried for `HTTP_RETRIES` only, and no usage telemetry."""
    # Neither the progress bar nor the run links MLflow prints to stdout (which would corrupt a
    # CLI's JSON output) has a per-call switch.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(HTTP_RETRIES))
    # MLflow's telemetry fetches its configuration from the internet on a background thread at the
    # first API call; where that fails (a cluster without egress) the thread deletes an environment
    # variable while `requests` iterates the environment for proxies on another thread: a training
    # registering through a tracking server then failed with KeyError '_MLFLOW_TELEMETRY_SESSION_ID'.
    # A serving or training process has no business calling out anyway. MLflow decided at import,
    # so its client is re-made (dropped) once the switch is set.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if get_telemetry_client() is not None:
        set_telemetry_client()  # type: ignore[no-untyped-call]  # MLflow ships it untyped
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


def redact_text(text: str) -> str:
    """`text` with the password of every URI in it replaced by `***`."""
    return _URI_PASSWORD.sub(r"\1:***@", text)


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


_URI_PASSWORD = re.compile(r"(://[^/\s:@]*):[^/\s@]*@")
_QUERY = re.compile(r"(?<=[^\s\"'?])\?[^\s\"']+")
_SERVER_ERRORS = re.compile(r"too many (\d{3}) error responses")
_HINTS = (
    (
        "Invalid Host header",
        "the server's --allowed-hosts must list the host name of the tracking URI",
    ),
    ("error code 401", "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD for this server"),
)


def _hinted(text: str) -> str:
    """`text` with a hint for the misconfigurations a tracking server reports cryptically."""
    return next((f"{text} ({hint})" for marker, hint in _HINTS if marker in text), text)


def _storage_error(action: str, exc: Exception) -> RepositoryError:
    """An exception of the artifact store's SDK (botocore for `s3://`) as one line: which
    operation, what the store said, and for missing credentials where they come from."""
    text = _QUERY.sub("", redact_text(_first_line(exc)))  # botocore shows the request's query
    if "Credentials" in type(exc).__name__:
        return RepositoryUnavailableError(
            f"cannot use the artifact storage ({action}): {text}; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (and MLFLOW_S3_ENDPOINT_URL for an S3-compatible store) in this "
            "process's environment, or track through an MLflow server with --serve-artifacts"
        )
    if _is_connection_error(exc) or "Endpoint" in type(exc).__name__:
        return RepositoryUnavailableError(f"the artifact storage is unavailable ({action}): {text}")
    return RepositoryError(f"{action} failed: the artifact storage refused: {text}")


@contextmanager
def translated(uri: str, action: str, *, not_found: str | None = None) -> Iterator[None]:
    """Re-raise MLflow, driver and storage SDK exceptions from the block as layerops repository
    errors (one line each; URIs redacted)."""
    if uri.lower().startswith(("http://", "https://")):
        probe(uri)  # MLflow retries a refused HTTP connection for minutes: refuse in milliseconds
    try:
        yield
    except LayeropsError:
        raise
    except MlflowException as exc:
        if not_found is not None and exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFoundError(not_found) from exc
        text = redact_text(_first_line(exc.message))
        failing = _SERVER_ERRORS.search(text)
        if failing is not None:
            raise RepositoryUnavailableError(
                f"the MLflow server {redact(uri)} answered HTTP {failing.group(1)} to every retry "
                f"({action}); its log says why (with --serve-artifacts, often its artifact storage "
                "is unreachable or refuses the server's credentials)"
            ) from exc
        if _looks_unreachable(exc):
            raise RepositoryUnavailableError(
                f"MLflow backend {redact(uri)} is unavailable ({action}): {text}"
            ) from exc
        raise RepositoryError(f"{action} failed: {_hinted(text)}") from exc
    except ImportError as exc:
        raise RepositoryUnavailableError(
            f"cannot use MLflow backend {redact(uri)}: a driver is not installed ({exc})"
        ) from exc
    except (OSError, sqlalchemy.exc.SQLAlchemyError) as exc:
        if _is_connection_error(exc):
            raise RepositoryUnavailableError(
                f"MLflow backend {redact(uri)} is unavailable ({action}): {redact_text(_first_line(exc))}"
            ) from exc
        raise RepositoryError(f"{action} failed: {redact_text(_first_line(exc))}") from exc
    except Exception as exc:
        if type(exc).__module__.split(".", 1)[0] not in _STORAGE_SDKS:
            raise
        raise _storage_error(action, exc) from exc
