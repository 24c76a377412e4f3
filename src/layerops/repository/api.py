"""The repository contract: what every layer may ask of the model repository.

If MLflow is ever replaced, this file is the list of what to rebuild. Implementations:
`layerops.repository.mlflow_repo.MlflowRepository` (any MLflow tracking URI).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # the bundle's pydantic models take a tenth of a second to build: not for `models list`
    from layerops.bundle import ModelBundle


@dataclass(frozen=True)
class CandidateRun:
    """One trained candidate: a nested run under the pipeline run."""

    name: str
    params: dict[str, object]
    metrics: dict[str, float]
    """Quality metrics (`val_*`, `test_*`), timings and latency, flat."""
    system_metrics: dict[str, float] = field(default_factory=dict)
    """Peak RSS (MB) and CPU share while training."""
    trials: list[tuple[dict[str, object], float]] = field(default_factory=list)
    """Each tuning trial's parameters and validation score."""


@dataclass(frozen=True)
class TrainingRun:
    """A whole pipeline run: its spec, its candidates and the winner's bundle."""

    pipeline: str
    """The model name the spec registers under (also the experiment name)."""
    params: dict[str, object]
    """Flattened spec settings worth searching by (task, target, split, seed...)."""
    tags: dict[str, str]
    """Lineage tags: dataset hash, spec hash, git commit, data source."""
    candidates: list[CandidateRun]
    winner: str
    """Name of the winning candidate."""
    leaderboard_csv: str = ""
    """The leaderboard as CSV text, stored as an artifact."""
    metrics: dict[str, float] = field(default_factory=dict)
    """The registered model's metrics, logged on the pipeline run (default: the winner's)."""


@dataclass(frozen=True)
class RunInfo:
    """Identifiers of a logged pipeline run."""

    run_id: str
    experiment_id: str
    bundle_uri: str
    """Artifact URI of the winner's bundle folder."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model."""

    name: str
    version: int
    run_id: str | None
    created_at: datetime
    aliases: tuple[str, ...]
    tags: dict[str, str]
    source: str
    description: str = ""


LINEAGE_TAGS = {
    "spec": "layerops.spec_path",
    "spec sha256": "layerops.spec_sha256",
    "data": "layerops.data_source",
    "data sha256": "layerops.dataset_sha256",
    "git commit": "layerops.git_commit",
    "git dirty": "layerops.git_dirty",
    "seed": "layerops.seed",
    "python": "layerops.python",
    "platform": "layerops.platform",
    "fitted on": "layerops.fit_splits",
}
"""Lineage shown for a version → the version tag training records it in."""
FIT_SPLITS_TAG = "layerops.fit_splits"
"""Version tag: the splits the registered model was fitted on, e.g. `train+validation`."""
LIBRARIES_TAG = "layerops.libraries"
"""Version tag: the library versions the model was trained with, as a JSON object."""


_METRIC_PREFIXES = {
    "val_": "validation",
    "cv_std_": "validation std",
    "selected_test_": "selected test",
    "test_": "test",
}
"""Run metric name prefix → the split `VersionDetails.metrics` files it under."""


@dataclass(frozen=True)
class VersionDetails:
    """A version with what it was made from and how it scored: what `models show` prints."""

    version: ModelVersion
    metrics: dict[str, dict[str, float]]
    """`validation`, `test` (the registered model's), and where recorded `validation std` (over
    CV folds) and `selected test` (the selected model's, before the refit) → metric → value."""
    latency: dict[str, float]
    """Prediction latency measured at training (`single_row_p50_ms`, `batch_p99_ms`...)."""
    lineage: dict[str, str]
    """The `LINEAGE_TAGS` the version carries (older versions recorded fewer)."""
    libraries: dict[str, str]
    """Library → version at training (empty for versions registered before it was recorded)."""
    training_seconds: float | None = None

    @classmethod
    def of(cls, version: ModelVersion, run_metrics: dict[str, float]) -> VersionDetails:
        """The details of `version` from its tags and its run's metrics."""
        metrics: dict[str, dict[str, float]] = {"validation": {}, "test": {}}
        latency: dict[str, float] = {}
        for key, value in sorted(run_metrics.items()):
            prefix = next((p for p in _METRIC_PREFIXES if key.startswith(p)), None)
            if prefix is not None and len(key) > len(prefix):
                metrics.setdefault(_METRIC_PREFIXES[prefix], {})[key.removeprefix(prefix)] = value
            elif key.endswith("_ms") or key.startswith("batch_"):
                latency[key] = value
        lineage = {label: version.tags[tag] for label, tag in LINEAGE_TAGS.items() if tag in version.tags}
        try:
            recorded = json.loads(version.tags.get(LIBRARIES_TAG, "{}"))
        except ValueError:
            recorded = {}
        libraries = {str(k): str(v) for k, v in recorded.items()} if isinstance(recorded, dict) else {}
        return cls(version, metrics, latency, lineage, libraries, run_metrics.get("train_seconds"))


@dataclass(frozen=True)
class ModelSummary:
    """A registered model with its newest version and aliases."""

    name: str
    latest_version: int | None
    aliases: dict[str, int]
    description: str = ""


@dataclass(frozen=True)
class AliasChange:
    """One move of an alias: when, from which version to which, and why."""

    name: str
    alias: str
    version: int | None
    """The version the alias points to after the change (None: alias removed)."""
    previous: int | None
    at: datetime
    reason: str
    rollback: bool = False
    """The change was a rollback (it takes the alias one step back through its history)."""
    forced: bool = False
    """The move was forced past a refusing promotion gate (`reason` says why)."""
    details: dict[str, Any] = field(default_factory=dict)
    """The JSON numbers behind the decision (a gate report, a canary comparison); a record too
    large for one registry tag keeps its smaller keys and `"truncated": true`."""


RELEASE_TAG_PREFIX = "layerops.release."
"""Registered-model tags the releases layer may keep state in (`model_tag` / `set_model_tag`)."""


@dataclass(frozen=True)
class ReleaseEvent:
    """Something that happened to a model's releases that is not an alias move: a gate that
    refused a version, a retrain that trained one, a canary step."""

    name: str
    kind: str
    """A short machine-readable word, e.g. `gate_failed`, `retrain_trained`, `canary_step`."""
    at: datetime
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    """The JSON numbers behind the event (cut like `AliasChange.details` when too large)."""


@runtime_checkable
class RegistryReader(Protocol):
    """The read side of the repository: what `models list/show/history` need."""

    def list_models(self) -> list[ModelSummary]:
        """Every registered model."""
        ...

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of `name`, newest first. Raises `NotFoundError`."""
        ...

    def get_version(self, name: str, version: int) -> ModelVersion:
        """One version. Raises `NotFoundError`."""
        ...

    def resolve_alias(self, name: str, alias: str) -> ModelVersion:
        """The version `alias` points to. Raises `NotFoundError`."""
        ...

    def history(self, name: str) -> list[AliasChange]:
        """Every alias change of `name`, oldest first."""
        ...

    def events(self, name: str) -> list[ReleaseEvent]:
        """Every release event of `name`, oldest first. Raises `NotFoundError`."""
        ...

    def version_details(self, name: str, version: int) -> VersionDetails:
        """A version with its lineage, metrics, latency and environment. Raises `NotFoundError`."""
        ...


@runtime_checkable
class ModelRepository(Protocol):
    """Stores training runs and bundles; versions, aliases, promotion and rollback."""

    def log_training(self, run: TrainingRun, bundle_dir: Path) -> RunInfo:
        """Log a pipeline run with one nested run per candidate and the winner's bundle."""
        ...

    def register(
        self, name: str, run: RunInfo, *, tags: dict[str, str] | None = None, description: str = ""
    ) -> ModelVersion:
        """Register the run's bundle as the next version of `name` (`description`: the spec's, shown
        by `models list`; a later version's description replaces an earlier one's on the model)."""
        ...

    def list_models(self) -> list[ModelSummary]:
        """Every registered model."""
        ...

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of `name`, newest first. Raises `NotFoundError`."""
        ...

    def get_version(self, name: str, version: int) -> ModelVersion:
        """One version. Raises `NotFoundError`."""
        ...

    def resolve_alias(self, name: str, alias: str) -> ModelVersion:
        """The version `alias` points to. Raises `NotFoundError`."""
        ...

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
        """Point `alias` at `version`, recording the change (with `details`, the JSON numbers
        behind it, and whether it was `forced` past a gate) in the history. Pointing it where it
        already points changes and records nothing. When processes move one alias at once, each
        change is recorded once and the alias ends where the history's last entry says."""
        ...

    def remove_alias(
        self, name: str, alias: str, *, reason: str = "", details: dict[str, Any] | None = None
    ) -> AliasChange:
        """Remove `alias` (the change's `version` is None), recording it in the history; a later
        `rollback` puts it back on the version it left. Raises `NotFoundError` when it is not set."""
        ...

    def rollback(self, name: str, alias: str = "production", *, reason: str = "") -> AliasChange:
        """Move `alias` back to the version it pointed to before its last change."""
        ...

    def history(self, name: str) -> list[AliasChange]:
        """Every alias change of `name`, oldest first."""
        ...

    def record_event(
        self, name: str, kind: str, message: str, details: dict[str, Any] | None = None
    ) -> ReleaseEvent:
        """Record a release event of model `name` (kept like the alias history: one registered-model
        tag each, never overwritten). Raises `NotFoundError` for an unknown model."""
        ...

    def events(self, name: str) -> list[ReleaseEvent]:
        """Every release event of `name`, oldest first. Raises `NotFoundError`."""
        ...

    def model_tag(self, name: str, key: str) -> str | None:
        """The value of the release state tag `key` of model `name` (None when unset).

        `key` must start with `layerops.release.` (`ValueError` otherwise); an unknown model
        raises `NotFoundError`."""
        ...

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        """Set the release state tag `key` (starting with `layerops.release.`) of model `name`."""
        ...

    def delete_model_tag(self, name: str, key: str) -> None:
        """Remove the release state tag `key` of model `name` (nothing happens when it is unset)."""
        ...

    def load_bundle(self, name: str, ref: int | str, *, native: bool = True) -> ModelBundle:
        """Download and verify the bundle of a version number or an alias.

        `native=False` verifies every file but leaves the native model undeserialised
        (`bundle.model` is None): serving on the ONNX export needs only that.
        """
        ...
