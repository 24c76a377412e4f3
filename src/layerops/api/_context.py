"""Where the Python API finds its repository: explicit arguments, else `LAYEROPS_*` variables."""

from __future__ import annotations

from pathlib import Path

from layerops.repository.api import ModelRepository, RegistryReader
from layerops.settings import Settings, load_settings


def settings(home: str | Path | None = None, tracking_uri: str | None = None) -> Settings:
    """The settings in force: `LAYEROPS_*` variables, overridden by the arguments given."""
    overrides: dict[str, object] = {}
    if home is not None:
        overrides["home"] = Path(home)
    if tracking_uri is not None:
        overrides["tracking_uri"] = tracking_uri
    return load_settings(**overrides)


def repository(
    home: str | Path | None = None, tracking_uri: str | None = None, *, create: bool = True
) -> ModelRepository:
    """The model repository for these settings (embedded sqlite under `home` by default).

    `create=False`: an embedded repository that does not exist is an error, not a new one.
    """
    from layerops.repository.factory import open_repository

    return open_repository(settings(home, tracking_uri), create=create)


def reader(home: str | Path | None = None, tracking_uri: str | None = None) -> RegistryReader:
    """The read side of an existing repository (never creates one; MLflow only when needed)."""
    from layerops.repository.factory import open_reader

    return open_reader(settings(home, tracking_uri))
