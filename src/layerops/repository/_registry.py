"""The MLflow model registry: versions, aliases and their history, rollback, and verified bundles."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.entities.model_registry import ModelVersion as MlflowVersion
from mlflow.entities.model_registry import RegisteredModel
from mlflow.exceptions import MlflowException

from layerops.bundle import ModelBundle, bundle_digest
from layerops.errors import BundleError, NotFoundError, RepositoryError
from layerops.numbers import parse_natural
from layerops.repository import _history
from layerops.repository._alias_moves import AliasMoves
from layerops.repository._boundary import translated
from layerops.repository._cache import fetch_bundle
from layerops.repository._layout import (
    BUNDLE_PATH,
    DIGEST_TAG,
    KIND_TAG,
    LAYOUT_TAG,
    MLFLOW_MODEL_LAYOUT,
    RUN_TAG,
    bundle_path,
    source_path,
)
from layerops.repository.api import AliasChange, ModelSummary, ModelVersion, RunInfo, VersionDetails

REGISTER_TIMEOUT_S = 300


class Registry:
    """Registered models, their versions and aliases, through one `MlflowClient`."""

    def __init__(self, client: MlflowClient, uri: str, *, cache_dir: Path | None) -> None:
        """Work through `client` (talking to `uri`); loaded bundles are cached under `cache_dir`."""
        self._client = client
        self._uri = uri
        self._cache_dir = cache_dir
        self._moves = AliasMoves(client)

    # -- versions ----------------------------------------------------------------------------

    def register(
        self, name: str, run: RunInfo, *, tags: dict[str, str] | None = None, description: str = ""
    ) -> ModelVersion:
        """Register the run's model as the next version of `name`.

        The version's source is the run's MLflow model folder (`model/`, the bundle inside it), or
        for a run logged before that layout (no layout tag) the bundle folder itself.
        """
        action = f"registering run {run.run_id} as model {name!r}"
        with translated(self._uri, action, not_found=f"training run {run.run_id!r} does not exist"):
            logged = self._client.get_run(run.run_id)
        status, run_tags = logged.info.status, dict(logged.data.tags)
        if status != "FINISHED" or run_tags.get(KIND_TAG) != "pipeline":
            raise RepositoryError(
                f"cannot register run {run.run_id}: it is not a finished layerops training run "
                f"(status {status})"
            )
        layout = run_tags.get(LAYOUT_TAG)
        digest = self._logged_digest(run.run_id, bundle_path(layout))
        if run_tags.get(DIGEST_TAG, digest) != digest:
            raise BundleError(
                f"the bundle logged in run {run.run_id} changed after logging (digest mismatch)"
            )
        version_tags = {key: value for key, value in run_tags.items() if not key.startswith("mlflow.")}
        version_tags.update(tags or {})
        version_tags.update({DIGEST_TAG: digest, RUN_TAG: run.run_id})
        version_tags.pop(LAYOUT_TAG, None)  # the run's layout, never a caller's tag, says where the bundle is
        if layout is not None:
            version_tags[LAYOUT_TAG] = layout
        source = f"{logged.info.artifact_uri.rstrip('/')}/{source_path(layout)}"
        with translated(self._uri, action):
            try:
                self._client.create_registered_model(name)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            if description:
                self._client.update_registered_model(name, description=description)
            created = self._client.create_model_version(
                name,
                source,
                run_id=run.run_id,
                tags=version_tags,
                description=description or None,
                await_creation_for=REGISTER_TIMEOUT_S,
            )
            version = self._client.get_model_version(name, created.version)
        if version.status != "READY":
            raise RepositoryError(
                f"model {name!r} version {version.version} is {version.status}, not READY: "
                f"{version.status_message or 'no reason given'}"
            )
        return _to_version(version, {})

    def _logged_digest(self, run_id: str, path: str) -> str:
        missing = f"training run {run_id} has no logged bundle"
        with (
            tempfile.TemporaryDirectory(prefix="layerops-manifest-") as tmp,
            translated(self._uri, f"reading the bundle of run {run_id}", not_found=missing),
        ):
            try:
                local = self._client.download_artifacts(run_id, f"{path}/manifest.json", tmp)
            except FileNotFoundError as exc:
                raise NotFoundError(missing) from exc
            return bundle_digest(Path(local).parent)

    def list_models(self) -> list[ModelSummary]:
        """Every registered model."""
        models: list[RegisteredModel] = []
        with translated(self._uri, "listing registered models"):
            token: str | None = None
            while True:
                page = self._client.search_registered_models(max_results=100, page_token=token)
                models.extend(page)
                token = page.token
                if not token:
                    break
        return [
            ModelSummary(
                name=model.name,
                latest_version=max((int(v.version) for v in model.latest_versions or []), default=None),
                aliases={alias: int(version) for alias, version in (model.aliases or {}).items()},
                description=model.description or "",
            )
            for model in sorted(models, key=lambda m: str(m.name))
        ]

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of `name`, newest first. Raises `NotFoundError`."""
        model = self._model(name)
        quote = '"' if "'" in name else "'"
        found: list[MlflowVersion] = []
        with translated(self._uri, f"listing versions of model {name!r}"):
            token: str | None = None
            while True:
                page = self._client.search_model_versions(
                    f"name = {quote}{name}{quote}", max_results=200, page_token=token
                )
                found.extend(page)
                token = page.token
                if not token:
                    break
        versions = [_to_version(v, model.aliases or {}) for v in found]
        return sorted(versions, key=lambda v: v.version, reverse=True)

    def get_version(self, name: str, version: int) -> ModelVersion:
        """One version. Raises `NotFoundError`."""
        model = self._model(name)
        return _to_version(self._mlflow_version(name, version), model.aliases or {})

    def resolve_alias(self, name: str, alias: str) -> ModelVersion:
        """The version `alias` points to. Raises `NotFoundError`."""
        model = self._model(name)
        aliases = model.aliases or {}
        if alias not in aliases:
            raise NotFoundError(f"model {name!r} has no alias {alias!r}")
        return _to_version(self._mlflow_version(name, int(aliases[alias])), aliases)

    def version_details(self, name: str, version: int) -> VersionDetails:
        """A version with its run's metrics. Raises `NotFoundError`."""
        entry = self.get_version(name, version)
        run_id = entry.run_id or entry.tags.get(RUN_TAG)
        if not run_id:
            return VersionDetails.of(entry, {})
        with translated(
            self._uri, f"reading run {run_id}", not_found=f"training run {run_id!r} does not exist"
        ):
            metrics = dict(self._client.get_run(run_id).data.metrics)
        return VersionDetails.of(entry, metrics)

    def _model(self, name: str) -> RegisteredModel:
        with translated(
            self._uri, f"reading model {name!r}", not_found=f"no registered model named {name!r}"
        ):
            return self._client.get_registered_model(name)

    def _mlflow_version(self, name: str, version: int) -> MlflowVersion:
        missing = f"model {name!r} has no version {version}"
        with translated(self._uri, f"reading model {name!r} version {version}", not_found=missing):
            return self._client.get_model_version(name, str(version))

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
        """Point `alias` at `version`, recording the change in the history (see the protocol)."""
        return self._move_alias(name, alias, version, reason, details=details, forced=forced)

    def _move_alias(
        self,
        name: str,
        alias: str,
        version: int,
        reason: str,
        *,
        rollback: bool = False,
        details: dict[str, Any] | None = None,
        forced: bool = False,
    ) -> AliasChange:
        model = self._model(name)
        self._mlflow_version(name, version)
        aliases = model.aliases or {}
        previous = int(aliases[alias]) if alias in aliases else None
        change = AliasChange(
            name, alias, version, previous, datetime.now(UTC), reason, rollback, forced, dict(details or {})
        )
        if previous == version:
            return change  # nothing moved: nothing to record
        action = f"pointing alias {alias!r} of model {name!r} at version {version}"
        with translated(self._uri, action):
            self._moves.apply(model, change)
        return change

    def remove_alias(
        self, name: str, alias: str, *, reason: str = "", details: dict[str, Any] | None = None
    ) -> AliasChange:
        """Remove `alias`, recording the change in the history. Raises `NotFoundError` when unset."""
        model = self._model(name)
        aliases = model.aliases or {}
        if alias not in aliases:
            raise NotFoundError(f"model {name!r} has no alias {alias!r}")
        previous = int(aliases[alias])
        change = AliasChange(
            name, alias, None, previous, datetime.now(UTC), reason, details=dict(details or {})
        )
        with translated(self._uri, f"removing alias {alias!r} of model {name!r}"):
            self._moves.apply(model, change)
        return change

    def rollback(self, name: str, alias: str = "production", *, reason: str = "") -> AliasChange:
        """Move `alias` one step back through its history (repeated: v3 → v2 → v1)."""
        model = self._model(name)
        stack = _history.alias_stack(_history.decode(name, dict(model.tags or {})), alias)
        aliases = model.aliases or {}
        current = int(aliases[alias]) if alias in aliases else None
        if stack and current != stack[-1]:
            raise RepositoryError(
                f"model {name!r}: alias {alias!r} points to version {current}, but its recorded history "
                f"left it on version {stack[-1]}; it was moved outside layerops, so use set_alias instead"
            )
        target = stack[-2] if len(stack) > 1 else None
        if target is None:
            raise NotFoundError(f"model {name!r}: alias {alias!r} has no earlier version to roll back to")
        note = f"{_history.ROLLBACK_REASON} {current}" + (f": {reason}" if reason else "")
        return self._move_alias(name, alias, target, note, rollback=True)

    def history(self, name: str) -> list[AliasChange]:
        """Every alias change of `name`, oldest first."""
        return _history.decode(name, dict(self._model(name).tags or {}))

    # -- bundles -----------------------------------------------------------------------------

    def load_bundle(self, name: str, ref: int | str, *, native: bool = True) -> ModelBundle:
        """Download and verify the bundle of a version number or an alias (see the protocol)."""
        number = ref if isinstance(ref, int) else parse_natural(ref)
        if number is not None:
            version = self.get_version(name, number)
        else:
            version = self.resolve_alias(name, str(ref))
        digest = version.tags.get(DIGEST_TAG)
        if not digest:
            raise BundleError(
                f"model {name!r} version {version.version} has no {DIGEST_TAG} tag; "
                "only versions registered by layerops can be loaded"
            )
        return fetch_bundle(
            lambda folder: self._download(version, folder), digest, self._cache_dir, native=native
        )

    def _download(self, version: ModelVersion, destination: Path) -> Path:
        uri = bundle_uri(version)
        missing = f"model {version.name!r} version {version.version}: bundle not found at {uri}"
        with translated(self._uri, f"downloading {uri}", not_found=missing):
            try:
                path = download_artifacts(artifact_uri=uri, dst_path=str(destination), tracking_uri=self._uri)
            except FileNotFoundError as exc:
                raise NotFoundError(missing) from exc
        return Path(path)


def bundle_uri(version: ModelVersion) -> str:
    """Where a version's bundle is: `<source>/bundle` in the MLflow model layout, else the source."""
    if version.tags.get(LAYOUT_TAG) == MLFLOW_MODEL_LAYOUT:
        return f"{version.source.rstrip('/')}/{BUNDLE_PATH}"
    return version.source


def _to_version(version: MlflowVersion, aliases: dict[str, Any]) -> ModelVersion:
    number = int(version.version)
    names = {alias for alias, target in aliases.items() if int(target) == number}
    names.update(version.aliases or [])
    return ModelVersion(
        name=version.name,
        version=number,
        run_id=version.run_id or None,
        created_at=datetime.fromtimestamp(int(version.creation_timestamp) / 1000, tz=UTC),
        aliases=tuple(sorted(names)),
        tags=dict(version.tags or {}),
        source=version.source or "",
        description=version.description or "",
    )
