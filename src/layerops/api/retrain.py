"""`layerops.retrain`: the retraining loop. Check drift, train on fresh rows, gate, move an alias.

    result = layerops.retrain("shipping", "specs/shipping.yaml", from_log=True, if_drift=True)
    result.status      # "no_drift", "gate_failed", "candidate" or "production"
    result.version     # the new version (None when nothing was trained)

One call runs the loop a scheduler (a CronJob, a Prefect flow) repeats:
1. `if_drift`: the drift check of the production version over the prediction log `since` a moment
   (`layerops drift NAME --version V --since ...`); no drift → nothing is trained.
2. the rows: the spec's own source, a file or a DataFrame (`data`), or the logged inputs of
   `name` since `since` that got a feedback label (`from_log`).
3. training with the spec; the new version's tags record the trigger (`layerops.retrain.trigger`:
   `manual` or `drift: <features>`) and the rows (`layerops.retrain.data`) next to the usual
   lineage (data path and content hash, spec, seed).
4. the promotion gate against production (`layerops.api.releases.promote`): a pass points
   `candidate` (for the server's canary to take further) or, with `promote`, `production` at the
   new version; a refusal moves nothing and the report says why.

Every step is a release event of the model (`retrain_skipped`, `retrain_started`,
`retrain_trained`, `retrain_failed`; the gate records its own).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from layerops.api import _context
from layerops.errors import LayeropsError, SpecError

if TYPE_CHECKING:
    import pandas as pd

    from layerops.api._retrain_data import TrainingData
    from layerops.api.training import SpecLike
    from layerops.monitoring.results import DriftReport
    from layerops.releases.gate import GatePolicy, GateReport
    from layerops.releases.promotion import Promotion
    from layerops.repository.api import AliasChange, ModelRepository
    from layerops.spec import PipelineSpec
    from layerops.training.pipeline import Reporter

__all__ = ["DATA_TAG", "TRIGGER_TAG", "RetrainResult", "Status", "retrain"]

Status = Literal["no_drift", "gate_failed", "candidate", "production"]
TRIGGER_TAG = "layerops.retrain.trigger"
"""Version tag: why a retrain trained the version (`manual`, or `drift: <features>`)."""
DATA_TAG = "layerops.retrain.data"
"""Version tag: the rows a retrain trained the version on, in words (a path, or the log window)."""


@dataclass(frozen=True)
class RetrainResult:
    """What one turn of the retraining loop did."""

    name: str
    status: Status
    """`no_drift` (nothing trained), `gate_failed` (trained, nothing moved), `candidate` or
    `production` (the alias now pointing at the new version)."""
    version: int | None
    """The version trained (None: nothing was trained)."""
    drift: DriftReport | None = None
    """The drift check that decided (None without `if_drift`)."""
    report: GateReport | None = None
    """The promotion gate's report (None when nothing was trained)."""
    trigger: str = "manual"
    """Why it trained: `manual`, or `drift: <features>` (empty: nothing was trained)."""
    source: str = ""
    """The rows it trained on, in words (for the log: the window and how many rows had labels)."""
    change: AliasChange | None = None
    """The alias move a passed gate made (None: nothing moved)."""

    @property
    def moved(self) -> bool:
        """Whether an alias now points at the new version."""
        return self.status in ("candidate", "production")


def retrain(  # noqa: PLR0913 - keyword-only options of a public function
    name: str,
    spec: SpecLike,
    *,
    data: str | Path | pd.DataFrame | None = None,
    from_log: bool = False,
    since: str | datetime = "7d",
    if_drift: bool = False,
    promote: bool = False,
    policy: GatePolicy | None = None,
    home: str | Path | None = None,
    tracking_uri: str | None = None,
    reporter: Reporter | None = None,
    jobs: int | None = None,
) -> RetrainResult:
    """Retrain registered model `name` with `spec` (whose `name` it must be) and gate the result.

    `data`: a CSV/Parquet file or a DataFrame in place of the spec's source; `from_log`: the
    logged rows of `name` since `since` (a duration such as `7d`, or a time) that have feedback
    labels, at least 50. `if_drift`: train only when the production version drifted over that
    window (raises a one-line `LayeropsError` when the log holds too few of its rows). The new
    version is gated against production (`policy`, default: the gate's) and, on a pass, becomes
    `candidate`, or with `promote` `production`. `jobs`, `reporter`: as for `layerops.train`.
    """
    from layerops.api.training import as_spec
    from layerops.training.pipeline import SilentReporter

    pipeline = as_spec(spec)
    if pipeline.name != name:
        raise SpecError(f"the spec trains model {pipeline.name!r}, not {name!r}: retrain with its own spec")
    if from_log and data is not None:
        raise LayeropsError("give data or from_log, not both: they are two sources of rows")
    notes = reporter or SilentReporter()
    repository = _context.repository(home, tracking_uri, create=False)
    repository.list_versions(name)  # an unknown model: NotFoundError before anything runs
    checked: DriftReport | None = None
    trigger = "manual"
    if if_drift:
        notes.stage(f"checking drift of {name}@production over the prediction log since {since}")
        checked = _drift(repository, name, since, home, tracking_uri)
        if not checked.drifted:
            message = (
                f"no drift in v{checked.version} ({checked.rows:,} rows, {checked.window}): nothing trained"
            )
            repository.record_event(name, "retrain_skipped", message, _drift_details(checked))
            return RetrainResult(name, "no_drift", None, checked, trigger="")
        trigger = f"drift: {', '.join(_drifted(checked))}"
    rows = _rows(pipeline, data, from_log=from_log, since=since, home=home)
    notes.stage(f"retraining {name} ({trigger}) on {rows.source}")
    details = {"trigger": trigger, "data": rows.source}
    repository.record_event(name, "retrain_started", f"retraining ({trigger}) on {rows.source}", details)
    try:
        version = _train(rows, {TRIGGER_TAG: trigger, DATA_TAG: rows.source}, home, tracking_uri, notes, jobs)
    except LayeropsError as exc:
        with contextlib.suppress(LayeropsError):  # the training's error matters more than the record's
            repository.record_event(name, "retrain_failed", f"training failed: {exc}", details)
        raise
    repository.record_event(
        name, "retrain_trained", f"trained v{version} ({trigger})", {**details, "version": version}
    )
    alias: Literal["production", "candidate"] = "production" if promote else "candidate"
    notes.stage(f"gating v{version} against production; on a pass it becomes {alias}")
    promotion = _gate(name, version, alias, policy, f"retrain ({trigger})", home, tracking_uri)
    status: Status = alias if promotion.change is not None else "gate_failed"
    return RetrainResult(
        name, status, version, checked, promotion.report, trigger, rows.source, promotion.change
    )


def _gate(
    name: str,
    version: int,
    alias: str,
    policy: GatePolicy | None,
    reason: str,
    home: str | Path | None,
    tracking_uri: str | None,
) -> Promotion:
    """Gate `version` against production; on a pass point `alias` at it (the gate records a refusal)."""
    from layerops.api.releases import promote

    return promote(
        name,
        version=version,
        alias=alias,
        against="production",
        policy=policy,
        reason=reason,
        home=home,
        tracking_uri=tracking_uri,
    )


def _drift(
    repository: ModelRepository,
    name: str,
    since: str | datetime,
    home: str | Path | None,
    tracking_uri: str | None,
) -> DriftReport:
    """The drift check of the production version over the log since `since`."""
    from layerops.api.monitoring import drift

    production = repository.resolve_alias(name, "production").version
    return drift(name, version=production, since=since, slices=0, home=home, tracking_uri=tracking_uri)


def _drifted(report: DriftReport) -> list[str]:
    """The drifted features, and `prediction` when the predictions drifted."""
    return report.drifted_features() + (
        ["prediction"] if report.prediction and report.prediction.drifted else []
    )


def _drift_details(report: DriftReport) -> dict[str, Any]:
    """The drift check in a few numbers: each test's deciding statistic and p-value."""
    tested = [*report.features, *([report.prediction] if report.prediction else [])]
    return {
        "version": report.version,
        "rows": report.rows,
        "window": report.window,
        "drifted": _drifted(report),
        "tests": {
            t.feature: {"test": t.test, "statistic": _finite(t.statistic), "p_value": _finite(t.p_value)}
            for t in tested
        },
    }


def _finite(value: float | None) -> float | None:
    """`value` for JSON: None for a test that did not run or gave no number."""
    return value if value is not None and math.isfinite(value) else None


def _rows(
    spec: PipelineSpec,
    data: str | Path | pd.DataFrame | None,
    *,
    from_log: bool,
    since: str | datetime,
    home: str | Path | None,
) -> TrainingData:
    """The spec and rows to train on: the log, a file or frame, or the spec's own source."""
    from layerops.api import _retrain_data

    if from_log:
        return _retrain_data.from_log(spec, since=since, home=home)
    if data is None:
        return _retrain_data.from_spec(spec)
    if isinstance(data, str | Path):
        return _retrain_data.from_file(spec, data)
    return _retrain_data.from_frame(spec, data)


def _train(
    rows: TrainingData,
    tags: dict[str, str],
    home: str | Path | None,
    tracking_uri: str | None,
    reporter: Reporter,
    jobs: int | None,
) -> int:
    """Train and register a new version on `rows` with `tags`; its number."""
    from layerops.api.training import train

    result = train(
        rows.spec,
        data=rows.frame,
        register=True,
        home=home,
        tracking_uri=tracking_uri,
        reporter=reporter,
        jobs=jobs,
        tags=tags,
    )
    if result.version is None:  # register=True always registers; a failure raised above
        raise LayeropsError(f"training {rows.spec.name} registered no version")
    return result.version
