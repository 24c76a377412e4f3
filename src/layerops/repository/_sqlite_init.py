"""A new sqlite store is built aside and linked into place whole.

MLflow builds a new sqlite database in place, through some sixty schema migrations taking
seconds. A process killed meanwhile (Ctrl-C on the first `layerops train`) leaves a database
that every later open fails to migrate (`table span_metrics already exists`). Here the schema is
built in a private temporary file next to the database and hard-linked to its name only when
complete: the name never holds a partial database, and when two processes race, the first link
wins and the other's copy is thrown away (`os.link` never replaces a file).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sqlalchemy.engine import make_url

from layerops.errors import RepositoryUnavailableError


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:` URI (None for other URIs and in-memory databases)."""
    if not uri.startswith("sqlite:"):
        return None
    database = make_url(uri).database
    return Path(database) if database and database != ":memory:" else None


def initialise_sqlite(uri: str) -> None:
    """Create the sqlite database of `uri` with MLflow's full schema, atomically, if it is missing."""
    path = sqlite_path(uri)
    if path is None or path.exists():
        return
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.init")
    try:
        client = MlflowClient(tracking_uri=f"sqlite:///{temporary}", registry_uri=f"sqlite:///{temporary}")
        client.search_experiments(max_results=1)  # builds the tracking schema (migrations included)
        client.search_registered_models(max_results=1)  # and checks the registry's
        with contextlib.suppress(FileExistsError):  # another process linked its copy first
            os.link(temporary, path)
    except (OSError, MlflowException) as exc:
        detail = str(exc.message if isinstance(exc, MlflowException) else exc).strip().splitlines()
        raise RepositoryUnavailableError(
            f"cannot create the MLflow database {path}: {detail[0] if detail else type(exc).__name__}"
        ) from None
    finally:
        temporary.unlink(missing_ok=True)
