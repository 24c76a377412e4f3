"""The repository contract: what every layer may ask of the model repository.

If MLflow is ever replaced, this file is the list of what to rebuild. Implementations:
`layerops.repository.mlflow_repo.MlflowRepository` (any MLflow tracking URI).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

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

    def set_alias(self, name: str, alias: str, version: int, *, reason: str = "") -> AliasChange:
        """Point `alias` at `version`, recording the change in the history."""
        ...

    def rollback(self, name: str, alias: str = "production", *, reason: str = "") -> AliasChange:
        """Move `alias` back to the version it pointed to before its last change."""
        ...

    def history(self, name: str) -> list[AliasChange]:
        """Every alias change of `name`, oldest first."""
        ...

    def load_bundle(self, name: str, ref: int | str, *, native: bool = True) -> ModelBundle:
        """Download and verify the bundle of a version number or an alias.

        `native=False` verifies every file but leaves the native model undeserialised
        (`bundle.model` is None): serving on the ONNX export needs only that.
        """
        ...
