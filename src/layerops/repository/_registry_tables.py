"""Read commands on the embedded sqlite repository without importing MLflow.

`import mlflow` takes two to three seconds, more than `layerops models list` may take in all. A
registry that is a local sqlite file is read here with the standard library's `sqlite3`: the
tables MLflow's model registry keeps, read-only, and only when the database's alembic revision
is the one this module was written against (`SCHEMA_REVISION`). Any other revision, a database
that is not sqlite, or an unexpected table layout returns None from `open_tables`, and the caller
falls back to MLflow itself. Writes always go through MLflow.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

from layerops.errors import NotFoundError, RepositoryError
from layerops.repository import _history
from layerops.repository._layout import RUN_TAG
from layerops.repository.api import AliasChange, ModelSummary, ModelVersion, ReleaseEvent, VersionDetails

SCHEMA_REVISION = "dc11669786a5"
"""MLflow's alembic revision whose tables this module reads (MLflow 3.x with workspaces)."""
WORKSPACE = "default"
_DELETED_STAGE = "Deleted_Internal"
"""MLflow marks a deleted version with this stage before removing it."""


def sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (None for other URIs and in-memory databases).

    The file SQLAlchemy (so MLflow) opens: the query is dropped and percent-escapes decoded, as
    its `make_url` does, without importing it.
    """
    if not uri.startswith("sqlite:///"):
        return None
    database = unquote(uri[len("sqlite:///") :].split("?", 1)[0])
    return Path(database) if database and database != ":memory:" else None


def open_tables(path: Path) -> RegistryTables | None:
    """The registry in the sqlite file `path`, or None when its schema is not `SCHEMA_REVISION`."""
    tables = RegistryTables(path)
    try:
        with tables._reading("reading the schema revision") as db:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except RepositoryError:
        return None
    return tables if row is not None and row[0] == SCHEMA_REVISION else None


class RegistryTables:
    """Registered models, versions, aliases, their history and run metrics, read with `sqlite3`."""

    def __init__(self, path: Path) -> None:
        """Read the sqlite database `path` (a read-only connection per operation)."""
        self._path = path

    @contextlib.contextmanager
    def _reading(self, action: str) -> Iterator[sqlite3.Connection]:
        try:
            connection = sqlite3.connect(f"{self._path.resolve().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise RepositoryError(f"{action}: cannot open {self._path}: {exc}") from exc
        try:
            yield connection
        except sqlite3.Error as exc:
            raise RepositoryError(f"{action} in {self._path} failed: {exc}") from exc
        finally:
            connection.close()

    def list_models(self) -> list[ModelSummary]:
        """Every registered model, by name."""
        with self._reading("listing registered models") as db:
            models = db.execute(
                "SELECT name, description FROM registered_models WHERE workspace = ? ORDER BY name",
                (WORKSPACE,),
            ).fetchall()
            latest = dict(
                db.execute(
                    "SELECT name, MAX(version) FROM model_versions WHERE workspace = ? "
                    "AND current_stage != ? GROUP BY name",
                    (WORKSPACE, _DELETED_STAGE),
                ).fetchall()
            )
            aliases: dict[str, dict[str, int]] = {}
            for alias, version, name in db.execute(
                "SELECT alias, version, name FROM registered_model_aliases WHERE workspace = ?",
                (WORKSPACE,),
            ):
                aliases.setdefault(name, {})[alias] = int(version)
        return [
            ModelSummary(
                name=name,
                latest_version=latest.get(name),
                aliases=aliases.get(name, {}),
                description=description or "",
            )
            for name, description in models
        ]

    def _aliases(self, name: str) -> dict[str, int]:
        with self._reading(f"reading model {name!r}") as db:
            found = db.execute(
                "SELECT 1 FROM registered_models WHERE workspace = ? AND name = ?", (WORKSPACE, name)
            ).fetchone()
            if found is None:
                raise NotFoundError(f"no registered model named {name!r}")
            rows = db.execute(
                "SELECT alias, version FROM registered_model_aliases WHERE workspace = ? AND name = ?",
                (WORKSPACE, name),
            ).fetchall()
        return {alias: int(version) for alias, version in rows}

    def _versions(self, name: str, aliases: dict[str, int], version: int | None) -> list[ModelVersion]:
        query = (
            "SELECT version, run_id, creation_time, source, description FROM model_versions "
            "WHERE workspace = ? AND name = ? AND current_stage != ?"
        )
        arguments: tuple[object, ...] = (WORKSPACE, name, _DELETED_STAGE)
        if version is not None:
            query += " AND version = ?"
            arguments += (version,)
        with self._reading(f"listing versions of model {name!r}") as db:
            rows = db.execute(query + " ORDER BY version DESC", arguments).fetchall()
            tags: dict[int, dict[str, str]] = {}
            for number, key, value in db.execute(
                "SELECT version, key, value FROM model_version_tags WHERE workspace = ? AND name = ?",
                (WORKSPACE, name),
            ):
                tags.setdefault(int(number), {})[key] = value
        return [
            ModelVersion(
                name=name,
                version=int(number),
                run_id=run_id or None,
                created_at=datetime.fromtimestamp(int(created) / 1000, tz=UTC),
                aliases=tuple(sorted(a for a, target in aliases.items() if target == int(number))),
                tags=tags.get(int(number), {}),
                source=source or "",
                description=description or "",
            )
            for number, run_id, created, source, description in rows
        ]

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of `name`, newest first. Raises `NotFoundError`."""
        return self._versions(name, self._aliases(name), None)

    def get_version(self, name: str, version: int) -> ModelVersion:
        """One version. Raises `NotFoundError`."""
        found = self._versions(name, self._aliases(name), version)
        if not found:
            raise NotFoundError(f"model {name!r} has no version {version}")
        return found[0]

    def resolve_alias(self, name: str, alias: str) -> ModelVersion:
        """The version `alias` points to. Raises `NotFoundError`."""
        aliases = self._aliases(name)
        if alias not in aliases:
            raise NotFoundError(f"model {name!r} has no alias {alias!r}")
        found = self._versions(name, aliases, aliases[alias])
        if not found:
            raise NotFoundError(f"model {name!r} has no version {aliases[alias]}")
        return found[0]

    def history(self, name: str) -> list[AliasChange]:
        """Every alias change of `name`, oldest first."""
        return _history.decode(name, self._tags(name, _history.HISTORY_PREFIX, "the alias history"))

    def events(self, name: str) -> list[ReleaseEvent]:
        """Every release event of `name`, oldest first. Raises `NotFoundError`."""
        return _history.decode_events(name, self._tags(name, _history.EVENT_PREFIX, "the release events"))

    def _tags(self, name: str, prefix: str, what: str) -> dict[str, str]:
        self._aliases(name)  # NotFoundError for an unknown model
        with self._reading(f"reading {what} of model {name!r}") as db:
            rows = db.execute(
                "SELECT key, value FROM registered_model_tags WHERE workspace = ? AND name = ? "
                "AND substr(key, 1, ?) = ?",
                (WORKSPACE, name, len(prefix), prefix),
            ).fetchall()
        return dict(rows)

    def run_metrics(self, run_id: str) -> dict[str, float]:
        """The latest value of every metric logged on run `run_id` (empty for an unknown run)."""
        with self._reading(f"reading the metrics of run {run_id}") as db:
            rows = db.execute(
                "SELECT key, value, is_nan FROM latest_metrics WHERE run_uuid = ?", (run_id,)
            ).fetchall()
        return {key: float("nan") if is_nan else float(value) for key, value, is_nan in rows}

    def version_details(self, name: str, version: int) -> VersionDetails:
        """A version with its run's metrics. Raises `NotFoundError`."""
        entry = self.get_version(name, version)
        run_id = entry.run_id or entry.tags.get(RUN_TAG)
        return VersionDetails.of(entry, self.run_metrics(run_id) if run_id else {})
