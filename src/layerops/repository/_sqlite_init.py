"""A new sqlite store is built aside and linked into place whole.

MLflow builds a new sqlite database in place, through some sixty schema migrations taking
seconds. A process killed meanwhile (Ctrl-C on the first `layerops train`) leaves a database
that every later open fails to migrate (`table span_metrics already exists`). Here the schema is
built in a private temporary file next to the database and hard-linked to its name only when
complete: the name never holds a partial database, and when two processes race, the first link
wins and the other's copy is thrown away (`os.link` never replaces a file).

The migrations cost some three CPU seconds, which a first `layerops train` pays while it fits its
models. So the empty, fully migrated database is built once per user and MLflow version, the same
way, as a template in the user's cache folder (`$XDG_CACHE_HOME/layerops`, else `~/.cache/layerops`);
a new store is a copy of it, linked into place the same way. Where the cache folder cannot be
written, each new store is built in full, as before.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

from mlflow import MlflowClient
from mlflow import __version__ as mlflow_version
from mlflow.exceptions import MlflowException

from layerops.errors import RepositoryUnavailableError
from layerops.repository._registry_tables import sqlite_file


def initialise_sqlite(uri: str) -> None:
    """Create the sqlite database of `uri` with MLflow's full schema, atomically, if it is missing."""
    path = sqlite_file(uri)
    if path is None or path.exists():
        return
    template = _schema_template()
    if template is not None:
        temporary = _aside(path)
        try:
            shutil.copyfile(template, temporary)
            with contextlib.suppress(FileExistsError):  # another process linked its copy first
                os.link(temporary, path)
            return
        except OSError:
            pass  # build it in full below, which reports what is wrong
        finally:
            temporary.unlink(missing_ok=True)
    _build(path)


def _schema_template() -> Path | None:
    """The migrated empty database of this MLflow version in the user's cache (built on first use)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    template = Path(cache) / "layerops" / f"mlflow-{mlflow_version}-empty.db"
    if template.exists():
        return template
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        _build(template)
    except (OSError, RepositoryUnavailableError):
        return None
    return template


def _aside(path: Path) -> Path:
    """A private temporary name next to `path`."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.init")


def _build(path: Path) -> None:
    """Build MLflow's schema in a temporary file next to `path`; link it to `path` when complete."""
    temporary = _aside(path)
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
