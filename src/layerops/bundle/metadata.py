"""`metadata.json`: everything the delivery and monitoring layers know about a bundle's model."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from layerops.drift_thresholds import MonitoringConfig

FORMAT_VERSION = 1

FeatureDtype = Literal["float", "int", "bool", "category"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureSchema(_Frozen):
    """One input feature as the model expects it."""

    name: str
    dtype: FeatureDtype
    required: bool = True
    categories: list[str] | None = None
    """Allowed values of a categorical feature (seen in training)."""
    min: float | None = None
    max: float | None = None
    """Observed range in the training data (informational; not enforced)."""


class OnnxInfo(_Frozen):
    """Whether an ONNX export exists and how closely it matches the native model."""

    converted: bool
    reason: str | None = None
    """Why the export is absent or was rejected."""
    max_abs_error: float | None = None
    """Largest |onnx - native| over the test split (probabilities or values)."""
    tolerance: float = 1e-5
    rows_checked: int = 0


class Lineage(_Frozen):
    """Where the model came from, enough to reproduce it (`layerops.reproduce`)."""

    dataset_sha256: str
    """Content hash of the training data as loaded (columns, dtypes, values, row order)."""
    spec_sha256: str
    seed: int
    git_commit: str | None = None
    """The commit checked out where the spec lives, `+dirty` when the work tree differs from it."""
    git_dirty: bool | None = None
    """Modified tracked files, or a spec file git does not track (None: not in a git repository)."""
    data_source: str = ""
    """A path or URL (absolute), a SQL query with its redacted URL, or in-memory data."""
    libraries: dict[str, str] = Field(default_factory=dict)
    spec: dict[str, Any] = Field(default_factory=dict)
    """The spec's content as validated (credentials in SQL URLs redacted)."""
    python: str = ""
    platform: str = ""
    """`platform.platform()` of the training machine."""
    fit_splits: list[str] = Field(default_factory=list)
    """The splits the model was fitted on: `train`, `validation`, and `test` with `refit_all`
    (empty for models trained before refitting existed: those saw the train split only)."""


class BundleMetadata(_Frozen):
    """The content of `metadata.json`."""

    format_version: int = FORMAT_VERSION
    name: str
    task: Literal["classification", "regression"]
    target: str
    classes: list[str] | None = None
    """Class labels in the order of the model's probability columns (classification)."""
    features: list[FeatureSchema]
    dropped_columns: dict[str, str] = Field(default_factory=dict)
    """Column -> why the cleaner dropped it."""
    candidate: str
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = Field(default_factory=dict)
    """Split name (`validation`, `test`) -> metric -> value."""
    latency: dict[str, float] = Field(default_factory=dict)
    """Measured at training: e.g. `single_row_p50_ms`, `batch_p99_ms`, `batch_rows`."""
    lineage: Lineage
    reference_profile: dict[str, Any] = Field(default_factory=dict)
    """Per-feature and prediction distributions of the training data, for drift checks."""
    reference_rows: list[dict[str, Any]] = Field(default_factory=list)
    """A few raw input rows with their native outputs, to warm and check an engine at load."""
    onnx: OnnxInfo = OnnxInfo(converted=False, reason="not attempted")
    monitoring: MonitoringConfig = MonitoringConfig()
    """Drift thresholds (the spec's `monitoring:` section, or the defaults)."""
    created_at: str

    def feature_names(self) -> list[str]:
        """Input feature names in schema order."""
        return [feature.name for feature in self.features]
