"""The Cleaner: drops rows and columns the spec allows it to drop, and never changes a value."""

from __future__ import annotations

from dataclasses import dataclass, field
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

    def lines(self) -> list[str]:
        """One human-readable line per drop."""
        rows = [f"dropped {n} row{'s' if n != 1 else ''}: {why}" for why, n in self.row_drops.items()]
        columns = [f"dropped column {name!r}: {why}" for name, why in self.dropped_columns.items()]
        return rows + columns


def clean(frame: pd.DataFrame, spec: CleaningSpec, *, target: str) -> tuple[pd.DataFrame, CleaningReport]:
    """Drop what `spec` allows and return a new frame (fresh RangeIndex) and the report."""
    if target not in frame.columns:
        columns = ", ".join(str(c) for c in frame.columns)
        raise DataError(f"target column {target!r} not found; columns are: {columns}")
    _check_names(frame, spec, target)
    row_drops: dict[str, int] = {}
    dropped: dict[str, str] = {}

    for name in spec.drop_columns:
        dropped[name] = "listed in cleaning.drop_columns"
    work = frame.drop(columns=list(spec.drop_columns))

    work = _drop_missing(work, [target, *spec.required], target, row_drops)
    if spec.drop_duplicates:
        work = _drop_duplicates(work, row_drops)
    if spec.drop_constant:
        work = _drop_columns(work, _constant_columns(work, target), dropped)
    work = _drop_outliers(work, spec.outliers, target, row_drops)
    if spec.collinearity_threshold is not None:
        work = _drop_columns(work, _collinear_columns(work, target, spec.collinearity_threshold), dropped)

    report = CleaningReport(len(frame), len(work), row_drops, dropped)
    if len(work) == 0:
        reasons = ", ".join(f"{n} {why}" for why, n in row_drops.items()) or "the data has no rows"
        raise TrainingError(f"no rows left after cleaning: {reasons} (of {len(frame)} rows)")
    if len(work.columns) <= 1:
        reasons = (
            ", ".join(f"{name} ({why})" for name, why in dropped.items()) or "the data has only the target"
        )
        raise TrainingError(f"no feature columns left after cleaning: dropped {reasons}")
    return work.reset_index(drop=True), report


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


def _drop_columns(work: pd.DataFrame, reasons: dict[Any, str], dropped: dict[str, str]) -> pd.DataFrame:
    for name, why in reasons.items():
        dropped[str(name)] = why
    return work.drop(columns=list(reasons)) if reasons else work


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


def _drop_outliers(
    work: pd.DataFrame, outliers: OutlierSpec, target: str, row_drops: dict[str, int]
) -> pd.DataFrame:
    """Drop rows outlying in any numeric feature; bounds are computed once, on this frame."""
    if outliers.method == "none" or len(work) == 0:
        return work
    keep = np.ones(len(work), dtype=bool)
    counts: dict[str, int] = {}
    for name in _numeric_features(work, target):
        values = _as_float(work[name])
        present = values[~np.isnan(values)]
        if len(present) == 0:
            continue
        with np.errstate(invalid="ignore"):
            if outliers.method == "iqr":
                q1, q3 = np.quantile(present, [0.25, 0.75])
                spread = q3 - q1
                if spread <= 0:
                    continue
                low, high = q1 - outliers.threshold * spread, q3 + outliers.threshold * spread
                outlying = (values < low) | (values > high)
            else:
                std = float(present.std())
                if not std > 0:
                    continue
                outlying = np.abs(values - present.mean()) / std > outliers.threshold
        new = outlying & keep  # a row outlying in several columns counts under the first
        if new.any():
            counts[f"outlier ({outliers.method}) in {name}"] = int(new.sum())
            keep &= ~new
    row_drops.update(counts)
    return work.loc[keep] if not keep.all() else work


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
