"""The Cleaner: drops rows and columns the spec allows it to drop, and never changes a value.

Two kinds of drop, kept apart so that a test metric is measured on rows as serving gets them:
- `screen` runs before the split on every row: columns listed in `drop_columns`, rows missing the
  target or a required column (serving refuses such a row too), exact duplicates (so no row is
  both trained on and scored).
- `learn` decides what is learned from data (constant columns, outlier bounds, collinear
  columns) on the training rows only; the `CleaningPlan` then drops those columns from every
  split and outlying rows from the rows a model is fitted on. Validation and test rows are
  scored as they come.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from layerops.errors import DataError, TrainingError
from layerops.spec import CleaningSpec, OutlierSpec


@dataclass(frozen=True)
class CleaningReport:
    """What the cleaner dropped and why: row counts per reason and a reason per column."""

    rows_in: int
    rows_out: int
    row_drops: dict[str, int] = field(default_factory=dict)
    """Reason -> rows dropped, in the order the steps ran (only reasons that dropped rows)."""
    dropped_columns: dict[str, str] = field(default_factory=dict)
    """Column -> why it was dropped."""
    fit_row_drops: dict[str, int] = field(default_factory=dict)
    """Reason -> rows left out of model fitting only (outliers by the training split's bounds)."""
    scored_outliers: int = 0
    """Validation/test rows outside the training bounds, kept and scored as they come."""
    unbounded: dict[str, float] = field(default_factory=dict)
    """Column -> share of training rows its outlier rule would flag, above `max_share`: no bound."""

    def lines(self) -> list[str]:
        """One human-readable line per drop."""
        rows = [f"dropped {_rows(n)}: {why}" for why, n in self.row_drops.items()]
        fit = [f"left {_rows(n)} out of fitting: {why}" for why, n in self.fit_row_drops.items()]
        columns = [f"dropped column {name!r}: {why}" for name, why in self.dropped_columns.items()]
        scored = (
            [f"kept {_rows(self.scored_outliers)} of validation/test outside the training bounds (scored)"]
            if self.scored_outliers
            else []
        )
        unbounded = [
            f"no outlier bound on {name!r}: the rule would flag {share:.1%} of the training rows"
            for name, share in self.unbounded.items()
        ]
        return rows + fit + columns + unbounded + scored


def _rows(n: int) -> str:
    return f"{n} row{'s' if n != 1 else ''}"


@dataclass(frozen=True)
class CleaningPlan:
    """What `learn` decided on the training rows: columns to drop and per-column outlier bounds."""

    method: str = "none"
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Numeric column -> (low, high): a value outside is an outlier (NaN never is)."""
    dropped_columns: dict[str, str] = field(default_factory=dict)
    """Column -> why (constant or collinear on the training rows)."""
    unbounded: dict[str, float] = field(default_factory=dict)
    """Column -> the share of training rows its rule would have flagged (over `max_share`)."""

    def columns(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`frame` without the dropped columns."""
        return frame.drop(columns=[c for c in frame.columns if str(c) in self.dropped_columns])

    def outlying(self, frame: pd.DataFrame) -> tuple[np.ndarray, dict[str, int]]:
        """A mask of rows outside the bounds, and counts per column (a row counts under its first)."""
        mask = np.zeros(len(frame), dtype=bool)
        counts: dict[str, int] = {}
        for name, (low, high) in self.bounds.items():
            values = _as_float(frame[name])
            with np.errstate(invalid="ignore"):
                new = ((values < low) | (values > high)) & ~mask
            if new.any():
                counts[f"outlier ({self.method}) in {name}"] = int(new.sum())
                mask |= new
        return mask, counts

    def fit_rows(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
        """The rows of `frame` a model may be fitted on (outliers dropped), with the drop counts."""
        mask, counts = self.outlying(frame)
        return (frame.loc[~mask] if mask.any() else frame), counts


def clean(frame: pd.DataFrame, spec: CleaningSpec, *, target: str) -> tuple[pd.DataFrame, CleaningReport]:
    """Screen `frame`, learn the plan on all of it and apply it: for data that is all training rows."""
    screened, report = screen(frame, spec, target=target)
    plan = learn(screened, spec, target=target)
    fitted, counts = plan.fit_rows(plan.columns(screened))
    report = replace(
        report,
        rows_out=len(fitted),
        row_drops={**report.row_drops, **counts},
        dropped_columns={**report.dropped_columns, **plan.dropped_columns},
        unbounded=plan.unbounded,
    )
    check_left(fitted, report, target)
    return fitted.reset_index(drop=True), report


def check_left(frame: pd.DataFrame, report: CleaningReport, target: str) -> None:
    """TrainingError when cleaning left no rows or no feature column in `frame`."""
    if len(frame) == 0:
        drops = {**report.row_drops, **report.fit_row_drops}
        reasons = ", ".join(f"{n} {why}" for why, n in drops.items()) or "the data has no rows"
        raise TrainingError(f"no rows left after cleaning: {reasons} (of {report.rows_in} rows)")
    if len([c for c in frame.columns if c != target]) == 0:
        dropped = report.dropped_columns
        reasons = (
            ", ".join(f"{name} ({why})" for name, why in dropped.items()) or "the data has only the target"
        )
        raise TrainingError(f"no feature columns left after cleaning: dropped {reasons}")


def screen(frame: pd.DataFrame, spec: CleaningSpec, *, target: str) -> tuple[pd.DataFrame, CleaningReport]:
    """The drops made before the split: listed columns, rows missing the target or a required
    column, duplicates. Returns a new frame (fresh RangeIndex) and the report."""
    if target not in frame.columns:
        columns = ", ".join(str(c) for c in frame.columns)
        raise DataError(f"target column {target!r} not found; columns are: {columns}")
    _check_names(frame, spec, target)
    row_drops: dict[str, int] = {}
    dropped = dict.fromkeys(spec.drop_columns, "listed in cleaning.drop_columns")
    work = frame.drop(columns=list(spec.drop_columns))
    work = _drop_missing(work, [target, *spec.required], target, row_drops)
    if spec.drop_duplicates:
        work = _drop_duplicates(work, row_drops)
    report = CleaningReport(len(frame), len(work), row_drops, dropped)
    check_left(work, report, target)
    return work.reset_index(drop=True), report


def learn(train: pd.DataFrame, spec: CleaningSpec, *, target: str) -> CleaningPlan:
    """Decide on the training rows `train`: constant columns, outlier bounds, collinear columns.

    The order is the whole-frame cleaner's: constants first, then bounds on what is left, then
    collinearity on the rows inside the bounds.
    """
    dropped = _constant_columns(train, target) if spec.drop_constant else {}
    work = train.drop(columns=list(dropped))
    bounds, unbounded = _outlier_bounds(work, spec.outliers, target)
    plan = CleaningPlan(spec.outliers.method, bounds, {str(k): v for k, v in dropped.items()}, unbounded)
    if spec.collinearity_threshold is not None:
        inside, _ = plan.fit_rows(work)
        collinear = {
            str(k): v for k, v in _collinear_columns(inside, target, spec.collinearity_threshold).items()
        }
        plan = CleaningPlan(
            plan.method,
            {k: v for k, v in bounds.items() if k not in collinear},
            {**plan.dropped_columns, **collinear},
            {k: v for k, v in unbounded.items() if k not in collinear},
        )
    return plan


# -- steps ----------------------------------------------------------------------------------


def _check_names(frame: pd.DataFrame, spec: CleaningSpec, target: str) -> None:
    columns = ", ".join(str(c) for c in frame.columns)
    unknown = [name for name in spec.drop_columns if name not in frame.columns]
    if unknown:
        names = ", ".join(repr(n) for n in unknown)
        raise DataError(f"cleaning.drop_columns: unknown column(s) {names}; columns are: {columns}")
    if target in spec.drop_columns:
        raise DataError(f"cleaning.drop_columns: {target!r} is the target and cannot be dropped")
    unknown = [name for name in spec.required if name not in frame.columns]
    if unknown:
        names = ", ".join(repr(n) for n in unknown)
        raise DataError(f"cleaning.required: unknown column(s) {names}; columns are: {columns}")
    both = [name for name in spec.required if name in spec.drop_columns]
    if both:
        names = ", ".join(repr(n) for n in both)
        raise DataError(f"cleaning.required: {names} also listed in cleaning.drop_columns")


def _drop_duplicates(work: pd.DataFrame, row_drops: dict[str, int]) -> pd.DataFrame:
    try:
        # Row hashes first (one vectorised pass); only rows whose hash repeats are compared
        # exactly, so a hash collision can never drop a row. ~5× faster than duplicated() alone.
        hashes = pd.util.hash_pandas_object(work, index=False)
        suspects = hashes.duplicated(keep=False).to_numpy()
        duplicate = np.zeros(len(work), dtype=bool)
        if suspects.any():
            duplicate[suspects] = work.loc[suspects].duplicated(keep="first").to_numpy()
    except TypeError as exc:  # cells holding lists or dicts (nested JSON) cannot be compared
        raise DataError(f"cannot look for duplicate rows: {exc}") from exc
    if duplicate.any():
        row_drops["duplicate"] = int(duplicate.sum())
        return work.loc[~duplicate]
    return work


def _drop_missing(
    work: pd.DataFrame, columns: list[str], target: str, row_drops: dict[str, int]
) -> pd.DataFrame:
    """Drop rows missing any of `columns`; each row is counted under the first such column."""
    keep = np.ones(len(work), dtype=bool)
    for name in dict.fromkeys(columns):  # the target first, then required in order, once each
        missing = work[name].isna().to_numpy() & keep
        if missing.any():
            reason = "missing target" if name == target else f"missing {name}"
            row_drops[reason] = int(missing.sum())
            keep &= ~missing
    return work.loc[keep] if not keep.all() else work


def _constant_columns(work: pd.DataFrame, target: str) -> dict[Any, str]:
    found: dict[Any, str] = {}
    for name in work.columns:
        if name == target:
            continue
        distinct = work[name].nunique(dropna=True)
        if distinct == 0:
            found[name] = "entirely missing"
        elif distinct == 1:
            found[name] = "constant"
    return found


def _numeric_features(work: pd.DataFrame, target: str) -> list[Any]:
    return [
        name
        for name, dtype in work.dtypes.items()
        if name != target and pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    ]


def _as_float(series: pd.Series) -> np.ndarray:
    return series.to_numpy(dtype="float64", na_value=np.nan)


def _outlier_bounds(
    work: pd.DataFrame, outliers: OutlierSpec, target: str
) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
    """Per numeric feature, the (low, high) range outside which a value is an outlier; and the
    columns left without one because the rule would flag more than `max_share` of the rows."""
    if outliers.method == "none" or len(work) == 0:
        return {}, {}
    bounds: dict[str, tuple[float, float]] = {}
    unbounded: dict[str, float] = {}
    for name in _numeric_features(work, target):
        values = _as_float(work[name])
        present = values[~np.isnan(values)]
        if len(present) == 0:
            continue
        if outliers.method == "iqr":
            q1, q3 = np.quantile(present, [0.25, 0.75])
            spread = float(q3 - q1)
            if spread <= 0:
                continue
            low, high = float(q1) - outliers.threshold * spread, float(q3) + outliers.threshold * spread
        else:
            std = float(present.std())
            if not std > 0:
                continue
            mean = float(present.mean())
            low, high = mean - outliers.threshold * std, mean + outliers.threshold * std
        share = float(np.count_nonzero((present < low) | (present > high))) / len(work)
        if share > outliers.max_share:
            unbounded[str(name)] = share
        else:
            bounds[str(name)] = (low, high)
    return bounds, unbounded


def _collinear_columns(work: pd.DataFrame, target: str, threshold: float) -> dict[Any, str]:
    """The later column of each numeric feature pair with |Pearson r| above `threshold`."""
    names = _numeric_features(work, target)
    if len(names) < 2 or len(work) < 2:
        return {}
    matrix = np.column_stack([_as_float(work[name]) for name in names])
    corr = pd.DataFrame(matrix, columns=names).corr(method="pearson").abs().to_numpy()
    kept: list[int] = []
    found: dict[Any, str] = {}
    for j, name in enumerate(names):
        partner = next((i for i in kept if corr[i, j] > threshold), None)
        if partner is None:
            kept.append(j)
        else:
            found[name] = f"collinear with {names[partner]} (|r|={corr[partner, j]:.3f})"
    return found
