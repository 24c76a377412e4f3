"""Where the Python API finds its repository: explicit arguments, else `LAYEROPS_*` variables."""

from __future__ import annotations

from pathlib import Path

from layerops.errors import LayeropsError
from layerops.repository.api import ModelRepository
from layerops.settings import Settings


def settings(home: str | Path | None = None, tracking_uri: str | None = None) -> Settings:
    """The settings in force: `LAYEROPS_*` variables, overridden by the arguments given."""
    overrides: dict[str, object] = {}
    if home is not None:
        overrides["home"] = Path(home)
    if tracking_uri is not None:
        overrides["tracking_uri"] = tracking_uri
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValueError as exc:
        raise LayeropsError(f"invalid setting: {str(exc).splitlines()[-1].strip()}") from None


def repository(home: str | Path | None = None, tracking_uri: str | None = None) -> ModelRepository:
    """The model repository for these settings (embedded sqlite under `home` by default)."""
    from layerops.repository.factory import open_repository

    return open_repository(settings(home, tracking_uri))
