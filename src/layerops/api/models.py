"""Registered models: list, show, promote, roll back and the alias history.

Every function takes the repository from `LAYEROPS_*` variables (embedded sqlite under
`.layerops` by default) unless `home=` or `tracking_uri=` name another; none creates one (a
missing repository is a `NotFoundError` naming where it looked). `list` and `history` return
DataFrames; `summaries`, `versions`, `changes` and `details` return the repository's dataclasses
(what the CLI prints, without importing pandas).

>>> import layerops
>>> board = layerops.models.list()
>>> board["name"].tolist(), board["aliases"][0]
(['iris', 'shipping'], {'production': 1})
>>> layerops.models.promote("iris", version=1, alias="staging").version
1
>>> layerops.models.history("iris")[["alias", "previous", "version"]].values.tolist()
[['production', <NA>, 1], ['staging', <NA>, 1]]
"""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import TYPE_CHECKING

from layerops.api import _context
from layerops.repository.api import (
    AliasChange,
    ModelSummary,
    ModelVersion,
    RegistryReader,
    ReleaseEvent,
    VersionDetails,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "changes",
    "details",
    "events",
    "history",
    "list",
    "promote",
    "rollback",
    "show",
    "summaries",
    "versions",
]


def summaries(
    *, home: str | Path | None = None, tracking_uri: str | None = None
) -> builtins.list[ModelSummary]:
    """Every registered model (name, latest version, aliases, description), by name."""
    return _context.reader(home, tracking_uri).list_models()


def list(*, home: str | Path | None = None, tracking_uri: str | None = None) -> pd.DataFrame:
    """Every registered model: name, latest version, aliases (alias → version) and description."""
    import pandas as pd

    rows = [
        {
            "name": s.name,
            "latest_version": s.latest_version,
            "aliases": dict(sorted(s.aliases.items())),
            "description": s.description,
        }
        for s in summaries(home=home, tracking_uri=tracking_uri)
    ]
    return pd.DataFrame(rows, columns=["name", "latest_version", "aliases", "description"])


def show(
    name: str,
    *,
    version: int | None = None,
    alias: str | None = None,
    home: str | Path | None = None,
    tracking_uri: str | None = None,
) -> ModelVersion:
    """One version of `name`: by number, by alias, or the newest.

    >>> entry = layerops.models.show("iris", alias="production")
    >>> entry.version, "production" in entry.aliases
    (1, True)
    """
    return _pick(_context.reader(home, tracking_uri), name, version, alias)


def _pick(reader: RegistryReader, name: str, version: int | None, alias: str | None) -> ModelVersion:
    if alias is not None:
        return reader.resolve_alias(name, alias)
    if version is not None:
        return reader.get_version(name, version)
    return reader.list_versions(name)[0]


def details(
    name: str,
    *,
    version: int | None = None,
    alias: str | None = None,
    home: str | Path | None = None,
    tracking_uri: str | None = None,
) -> VersionDetails:
    """One version (by number, by alias, or the newest) with its lineage, validation and test
    metrics, latency and library versions."""
    reader = _context.reader(home, tracking_uri)
    return reader.version_details(name, _pick(reader, name, version, alias).version)


def versions(
    name: str, *, home: str | Path | None = None, tracking_uri: str | None = None
) -> builtins.list[ModelVersion]:
    """Every version of `name`, newest first."""
    return _context.reader(home, tracking_uri).list_versions(name)


def changes(
    name: str, *, home: str | Path | None = None, tracking_uri: str | None = None
) -> builtins.list[AliasChange]:
    """Every alias change of `name`, oldest first."""
    return _context.reader(home, tracking_uri).history(name)


def events(
    name: str, *, home: str | Path | None = None, tracking_uri: str | None = None
) -> builtins.list[ReleaseEvent]:
    """Every release event of `name` (gates that refused, retrains, canary steps), oldest first."""
    return _context.reader(home, tracking_uri).events(name)


def promote(
    name: str,
    *,
    version: int | None = None,
    alias: str = "production",
    reason: str = "",
    home: str | Path | None = None,
    tracking_uri: str | None = None,
) -> AliasChange:
    """Point `alias` (default production) at `version` (default: the newest); kept in the history.

    A plain alias move: nothing is scored. `layerops models promote` and
    `layerops.api.releases.promote` go through the promotion gate first.
    """
    repository = _context.repository(home, tracking_uri, create=False)
    target = version if version is not None else repository.list_versions(name)[0].version
    return repository.set_alias(name, alias, target, reason=reason or "promoted with layerops.models.promote")


def rollback(
    name: str,
    *,
    alias: str = "production",
    reason: str = "",
    home: str | Path | None = None,
    tracking_uri: str | None = None,
) -> AliasChange:
    """Move `alias` one step back through its history (repeated: v3 → v2 → v1)."""
    repository = _context.repository(home, tracking_uri, create=False)
    return repository.rollback(name, alias, reason=reason or "rolled back with layerops.models.rollback")


def history(name: str, *, home: str | Path | None = None, tracking_uri: str | None = None) -> pd.DataFrame:
    """Every alias change of `name`, oldest first: when, alias, from, to, why, whether forced."""
    import pandas as pd

    columns = ["at", "alias", "previous", "version", "reason", "forced"]
    rows = [
        {
            "at": c.at,
            "alias": c.alias,
            "previous": c.previous,
            "version": c.version,
            "reason": c.reason,
            "forced": c.forced,
        }
        for c in changes(name, home=home, tracking_uri=tracking_uri)
    ]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"previous": "Int64", "version": "Int64"})
