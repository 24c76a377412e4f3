"""Build the configured model repository from settings (the one place that picks the backend)."""

from __future__ import annotations

from layerops.errors import RepositoryError
from layerops.repository.api import ModelRepository
from layerops.settings import Settings


def open_repository(settings: Settings) -> ModelRepository:
    """The `MlflowRepository` for the settings' tracking URI, registry URI and artifact root."""
    from layerops.repository._sqlite_init import sqlite_path  # imports mlflow: only when opening
    from layerops.repository.mlflow_repo import MlflowRepository  # mlflow takes seconds to import

    tracking_uri = settings.resolved_tracking_uri()
    try:
        if not settings.tracking_uri:
            settings.home.mkdir(parents=True, exist_ok=True)
        database = sqlite_path(tracking_uri)
        if database is not None:
            database.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a parent that is a file, or no permission
        raise RepositoryError(
            f"cannot open the MLflow repository at {tracking_uri}: {type(exc).__name__}: {exc.strerror}"
        ) from None
    return MlflowRepository(
        tracking_uri,
        registry_uri=settings.registry_uri,
        artifact_root=settings.resolved_artifact_root(),
        cache_dir=settings.home.resolve() / "cache" / "bundles",
    )
