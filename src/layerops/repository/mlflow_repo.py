"""`MlflowRepository`: the `ModelRepository` contract over any MLflow tracking URI.

This module and its private helpers in `layerops.repository` are the only places that import
`mlflow`. Every MLflow or driver exception is translated (by `_boundary.translated`) into the
layerops error hierarchy. The class connects, then delegates: training runs to `_runs`, versions,
aliases and bundles to `_registry`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from layerops.bundle import ModelBundle
from layerops.errors import RepositoryUnavailableError
from layerops.repository._boundary import configure_mlflow, probe, probe_database, redact
from layerops.repository._layout import (
    BUNDLE_PATH,
    DIGEST_TAG,
    KIND_TAG,
    LAYOUT_TAG,
    MLFLOW_MODEL_LAYOUT,
    MLFLOW_MODEL_TAG,
    MODEL_PATH,
    PARENT_TAG,
    RUN_TAG,
)
from layerops.repository._registry import REGISTER_TIMEOUT_S, Registry, bundle_uri
from layerops.repository._releases import ReleaseRecords
from layerops.repository._runs import RunLog
from layerops.repository._sqlite_init import initialise_sqlite
from layerops.repository.api import (
    AliasChange,
    ModelSummary,
    ModelVersion,
    ReleaseEvent,
    RunInfo,
    TrainingRun,
    VersionDetails,
)

__all__ = [
    "BUNDLE_PATH",
    "DIGEST_TAG",
    "KIND_TAG",
    "LAYOUT_TAG",
    "MLFLOW_MODEL_LAYOUT",
    "MLFLOW_MODEL_TAG",
    "MODEL_PATH",
    "PARENT_TAG",
    "REGISTER_TIMEOUT_S",
    "RUN_TAG",
    "MlflowRepository",
    "bundle_uri",
]


class MlflowRepository:
    """The model repository over MLflow: sqlite or PostgreSQL directly, or a tracking server."""

    def __init__(
        self,
        tracking_uri: str,
        *,
        registry_uri: str | None = None,
        artifact_root: str | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        """Connect (fails fast with `RepositoryUnavailableError` naming an unusable URI)."""
        configure_mlflow()
        self._uri = tracking_uri
        self._registry_uri = registry_uri or tracking_uri
        artifact_root = _as_uri(artifact_root) if artifact_root else None
        for uri in dict.fromkeys((tracking_uri, self._registry_uri)):
            probe(uri)
            initialise_sqlite(uri)
            probe_database(uri)
        try:
            self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=self._registry_uri)
        except Exception as exc:  # bad scheme, missing driver, unwritable sqlite file...
            text = str(exc.message if isinstance(exc, MlflowException) else exc).strip().splitlines()
            raise RepositoryUnavailableError(
                f"cannot open the MLflow repository at {redact(tracking_uri)}: {text[0] if text else exc!r}"
            ) from exc
        self._runs = RunLog(self._client, tracking_uri, artifact_root=artifact_root)
        self._registry = Registry(self._client, tracking_uri, cache_dir=cache_dir)
        self._releases = ReleaseRecords(self._client, tracking_uri)

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI this repository talks to."""
        return self._uri

    # -- runs --------------------------------------------------------------------------------

    def log_training(self, run: TrainingRun, bundle_dir: Path) -> RunInfo:
        """Log a pipeline run with one nested run per candidate and the winner's bundle."""
        return self._runs.log_training(run, bundle_dir)

    # -- registry ----------------------------------------------------------------------------

    def register(
        self, name: str, run: RunInfo, *, tags: dict[str, str] | None = None, description: str = ""
    ) -> ModelVersion:
        """Register the run's bundle as the next version of `name` (`description`: the spec's, shown
        by `models list`; a later version's description replaces an earlier one's on the model)."""
        return self._registry.register(name, run, tags=tags, description=description)

    def list_models(self) -> list[ModelSummary]:
        """Every registered model."""
        return self._registry.list_models()

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of `name`, newest first. Raises `NotFoundError`."""
        return self._registry.list_versions(name)

    def get_version(self, name: str, version: int) -> ModelVersion:
        """One version. Raises `NotFoundError`."""
        return self._registry.get_version(name, version)

    def resolve_alias(self, name: str, alias: str) -> ModelVersion:
        """The version `alias` points to. Raises `NotFoundError`."""
        return self._registry.resolve_alias(name, alias)

    def version_details(self, name: str, version: int) -> VersionDetails:
        """A version with its lineage, metrics, latency and environment. Raises `NotFoundError`."""
        return self._registry.version_details(name, version)

    # -- aliases -----------------------------------------------------------------------------

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        reason: str = "",
        details: dict[str, Any] | None = None,
        forced: bool = False,
    ) -> AliasChange:
        """Point `alias` at `version`, recording the change (with `details` and `forced`) in the history."""
        return self._registry.set_alias(name, alias, version, reason=reason, details=details, forced=forced)

    def remove_alias(
        self, name: str, alias: str, *, reason: str = "", details: dict[str, Any] | None = None
    ) -> AliasChange:
        """Remove `alias`, recording the change in the history. Raises `NotFoundError` when unset."""
        return self._registry.remove_alias(name, alias, reason=reason, details=details)

    def rollback(self, name: str, alias: str = "production", *, reason: str = "") -> AliasChange:
        """Move `alias` back to the version it pointed to before its last change."""
        return self._registry.rollback(name, alias, reason=reason)

    def history(self, name: str) -> list[AliasChange]:
        """Every alias change of `name`, oldest first."""
        return self._registry.history(name)

    # -- release events and state ------------------------------------------------------------

    def record_event(
        self, name: str, kind: str, message: str, details: dict[str, Any] | None = None
    ) -> ReleaseEvent:
        """Record a release event of model `name`. Raises `NotFoundError` for an unknown model."""
        return self._releases.record_event(name, kind, message, details)

    def events(self, name: str) -> list[ReleaseEvent]:
        """Every release event of `name`, oldest first. Raises `NotFoundError`."""
        return self._releases.events(name)

    def model_tag(self, name: str, key: str) -> str | None:
        """The release state tag `key` (`layerops.release.*`) of model `name`, or None."""
        return self._releases.model_tag(name, key)

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        """Set the release state tag `key` (`layerops.release.*`) of model `name`."""
        self._releases.set_model_tag(name, key, value)

    def delete_model_tag(self, name: str, key: str) -> None:
        """Remove the release state tag `key` of model `name` (unset: nothing happens)."""
        self._releases.delete_model_tag(name, key)

    # -- bundles -----------------------------------------------------------------------------

    def load_bundle(self, name: str, ref: int | str, *, native: bool = True) -> ModelBundle:
        """Download and verify the bundle of a version number or an alias (see the protocol)."""
        return self._registry.load_bundle(name, ref, native=native)


def _as_uri(location: str) -> str:
    """An artifact location as a URI (plain paths become absolute `file://` URIs)."""
    if "://" in location or location.startswith(("file:", "mlflow-artifacts:")):
        return location
    return Path(location).resolve().as_uri()
