"""Drift thresholds: the spec's `monitoring:` section, kept in every bundle's metadata.

A ground module (pydantic only) so that the spec, which validates it, and the bundle, which
stores it, can both import it without importing each other.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DriftThresholds(_Frozen):
    """When a feature (or the predictions) counts as drifted; unset fields take the defaults.

    Numeric: the two-sample KS test's p-value is below `p_value` AND its statistic D is at least
    `ks_statistic` (an effect size, so that large windows do not flag negligible shifts).
    Categorical: the chi-square test's p-value is below `p_value` AND the PSI is at least `psi`.
    """

    p_value: float | None = Field(default=None, gt=0, lt=1)
    ks_statistic: float | None = Field(default=None, ge=0, le=1)
    psi: float | None = Field(default=None, ge=0)


DEFAULT_THRESHOLDS = DriftThresholds(p_value=0.01, ks_statistic=0.1, psi=0.2)


class MonitoringConfig(_Frozen):
    """The spec's `monitoring:` section, kept in the bundle for the server and `layerops drift`."""

    thresholds: DriftThresholds = DEFAULT_THRESHOLDS
    """Defaults for every feature and the predictions."""
    features: dict[str, DriftThresholds] = Field(default_factory=dict)
    """Per-feature overrides (only the fields set)."""
    prediction: DriftThresholds = DriftThresholds()
    """Overrides for the predictions."""
    min_rows: int = Field(default=100, ge=2)
    """A window (or time slice) with fewer rows is not tested: too few for a meaningful test."""

    def thresholds_for(self, feature: str | None) -> DriftThresholds:
        """The effective thresholds of `feature` (None: the predictions), every field set."""
        override = self.prediction if feature is None else self.features.get(feature, DriftThresholds())
        merged = {
            key: value if value is not None else getattr(self.thresholds, key)
            for key, value in override.model_dump().items()
        }
        base = {k: v if v is not None else getattr(DEFAULT_THRESHOLDS, k) for k, v in merged.items()}
        return DriftThresholds(**base)
