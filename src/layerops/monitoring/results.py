"""What a drift check finds: per-feature and prediction drift, drift over time, performance.

Plain frozen dataclasses (JSON through `as_dict`), made by `drift.py` and `performance.py`,
rendered by the CLI table, `--json` and `report.py`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

Kind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class Distribution:
    """Reference and current distributions on common bins, for plots.

    Numeric: `bins` holds len(edges) - 1 labels and `edges` the bin edges (the reference's
    quantile edges, widened to the current min/max); categorical: `bins` are the categories
    and `edges` is empty. Shares sum to 1 over the non-missing values of each sample.
    """

    bins: list[str]
    reference: list[float]
    current: list[float]
    edges: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's (or the predictions') drift test over a window."""

    feature: str
    """The feature name, or `prediction` for the model's outputs."""
    kind: Kind
    test: str
    """The test that decides the verdict: `ks` (numeric) or `chi2` (categorical)."""
    statistic: float | None
    """The deciding test's statistic (None: not tested)."""
    p_value: float | None
    threshold: str
    """The verdict rule in words, e.g. `p < 0.01 and D >= 0.1`."""
    drifted: bool
    reference_rows: int
    current_rows: int
    statistics: dict[str, float] = field(default_factory=dict)
    """Every statistic computed: `ks`, `ks_p_value`, `wasserstein` (numeric), `chi2`,
    `chi2_p_value` (categorical), `psi` (both)."""
    note: str | None = None
    """Why it was not tested (too few rows) or anything else worth a line."""
    distribution: Distribution | None = None


@dataclass(frozen=True)
class WindowDrift:
    """Drift over one time slice of the window (the report's drift-over-time plot)."""

    start: datetime
    end: datetime
    rows: int
    statistics: dict[str, float | None]
    """Feature (or `prediction`) → its deciding statistic in this slice (None: too few rows)."""
    drifted: list[str]


@dataclass(frozen=True)
class PerformancePoint:
    """Model quality over one time slice: observed from feedback and/or estimated."""

    start: datetime
    end: datetime
    rows: int
    labelled: int
    observed: float | None
    estimated: float | None


@dataclass(frozen=True)
class Performance:
    """Model quality over the window next to the training-time test metric.

    `observed` is computed on the logged rows that have feedback; `estimated` (classifiers, from
    the predicted probabilities: confidence-based performance estimation, the mean of the top
    class probability, an estimate of accuracy that assumes calibrated probabilities) is reported
    for all rows, labelled or not.
    """

    metric: str
    training: float | None
    """The bundle's test metric of the same name (None when training did not record it)."""
    observed: float | None
    labelled_rows: int
    estimated: float | None = None
    estimated_metric: str | None = None
    """`accuracy` for the estimate (CBPE estimates accuracy only)."""
    others: dict[str, float] = field(default_factory=dict)
    """Other metrics on the labelled rows (accuracy, f1_macro; rmse, mae, r2)."""
    timeline: list[PerformancePoint] = field(default_factory=list)


@dataclass(frozen=True)
class DriftReport:
    """Everything `layerops drift` prints, writes as JSON and renders as HTML."""

    model: str
    version: int
    task: str
    window: str
    """The window in words (`Window.describe()`)."""
    start: datetime | None
    end: datetime | None
    rows: int
    features: list[FeatureDrift]
    prediction: FeatureDrift | None
    timeline: list[WindowDrift] = field(default_factory=list)
    performance: Performance | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        """Whether any feature or the predictions drifted."""
        return any(f.drifted for f in self.features) or bool(self.prediction and self.prediction.drifted)

    def drifted_features(self) -> list[str]:
        """Names of the drifted features, in report order."""
        return [f.feature for f in self.features if f.drifted]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (datetimes as ISO 8601 strings)."""
        body: dict[str, Any] = _jsonable({**asdict(self), "drifted": self.drifted})
        return body


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
