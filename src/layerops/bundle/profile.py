"""The reference profile of training data and predictions, and the input schema inferred from a frame.

The profile is plain JSON (str keys, floats, ints, None; never NaN) so it can live in
`metadata.json`. Conventions, the same as pandas': `count` is the number of non-missing values,
`std` uses ddof=1, quantiles interpolate linearly, and category `frequencies` are shares of the
non-missing values. `missing_share` is the share of all rows that are missing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.api import types as ptypes

from layerops.bundle.metadata import FeatureSchema
from layerops.errors import DataError

QUANTILE_LEVELS: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
"""Quantiles recorded for every numeric feature and for regression predictions."""

PROFILE_VERSION = 2
"""2: regression profiles keep a sample of predictions (`predictions.sample`) for exact KS tests."""

SAMPLE_ROWS = 5000
"""Most reference rows (and regression predictions) a bundle keeps for drift tests: KS is exact on
this sample, and 5,000 rows tell a shift of 0.1 standard deviation from noise."""


def sample_positions(rows: int, *, cap: int = SAMPLE_ROWS, seed: int = 0) -> npt.NDArray[np.intp]:
    """Up to `cap` distinct row positions out of `rows`, in increasing order, the same for a seed."""
    if rows <= cap:
        return np.arange(rows, dtype=np.intp)
    picked = np.random.default_rng(seed).choice(rows, size=cap, replace=False)
    return np.sort(picked).astype(np.intp)


def reference_sample(
    frame: pd.DataFrame, features: list[FeatureSchema], *, cap: int = SAMPLE_ROWS, seed: int = 0
) -> pd.DataFrame:
    """A capped sample of `frame`'s feature columns as drift tests read them: numbers as float64
    (NaN missing), categories as text (None missing), in schema order, with a fresh index."""
    taken = frame.iloc[sample_positions(len(frame), cap=cap, seed=seed)]
    columns: dict[str, Any] = {}
    for feature in features:
        column = taken[feature.name]
        if feature.dtype == "category":
            text = column.astype(object).where(column.notna(), None)
            columns[feature.name] = pd.Series(
                [None if v is None else str(v) for v in text], dtype=object, name=feature.name
            )
        else:
            columns[feature.name] = (
                pd.to_numeric(column, errors="coerce").astype("float64").reset_index(drop=True)
            )
    return pd.DataFrame(columns)


def _number(value: Any) -> float | None:
    """A finite float, or None for NaN/inf/missing (JSON has no NaN)."""
    if value is None:
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def numeric_summary(values: pd.Series[Any], *, bins: int = 10) -> dict[str, Any]:
    """Count, missing share, moments, quantiles and a quantile-edged histogram of one column."""
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    present = numbers.dropna()
    rows = int(numbers.size)
    summary: dict[str, Any] = {
        "kind": "numeric",
        "count": int(present.size),
        "missing_share": float((rows - present.size) / rows) if rows else 0.0,
        "mean": None,
        "std": None,
        "min": None,
        "max": None,
        "quantiles": {str(level): None for level in QUANTILE_LEVELS},
        "histogram": {"edges": [], "counts": []},
    }
    if present.empty:
        return summary
    quantiles = present.quantile(list(QUANTILE_LEVELS))
    summary.update(
        mean=_number(present.mean()),
        std=_number(present.std()),
        min=_number(present.min()),
        max=_number(present.max()),
        quantiles={str(level): _number(quantiles.loc[level]) for level in QUANTILE_LEVELS},
        histogram=_histogram(np.asarray(present.to_numpy(), dtype=np.float64), bins),
    )
    return summary


def _histogram(values: npt.NDArray[np.float64], bins: int) -> dict[str, list[Any]]:
    """Counts between deduplicated quantile edges; the last bin includes its right edge."""
    levels = np.linspace(0.0, 1.0, max(1, bins) + 1)
    edges = np.unique(np.quantile(values, levels))
    if edges.size == 1:  # a constant column: one degenerate bin holding every value
        return {"edges": [float(edges[0])] * 2, "counts": [int(values.size)]}
    counts, _ = np.histogram(values, bins=edges)
    return {"edges": [float(edge) for edge in edges], "counts": [int(count) for count in counts]}


def categorical_summary(values: pd.Series[Any]) -> dict[str, Any]:
    """Count, missing share and the share of each category among non-missing values."""
    rows = int(values.size)
    present = values.dropna().astype(str)
    shares = present.value_counts(normalize=True, sort=False)
    ordered = sorted(shares.items(), key=lambda item: (-item[1], item[0]))
    return {
        "kind": "categorical",
        "count": int(present.size),
        "missing_share": float((rows - present.size) / rows) if rows else 0.0,
        "frequencies": {str(value): float(share) for value, share in ordered},
    }


def _prediction_labels(predictions: npt.NDArray[Any], classes: list[str] | None) -> list[str]:
    """Predicted class labels: integer predictions index into `classes`, others are labels."""
    flat = np.asarray(predictions).ravel()
    if classes is not None and flat.size and np.issubdtype(flat.dtype, np.integer):
        if flat.min() < 0 or flat.max() >= len(classes):
            raise DataError(f"predicted class index out of range for {len(classes)} classes")
        return [classes[int(index)] for index in flat]
    return [str(value) for value in flat]


def build_profile(
    frame: pd.DataFrame,
    features: list[FeatureSchema],
    predictions: npt.NDArray[Any],
    *,
    task: str,
    classes: list[str] | None,
    bins: int = 10,
) -> dict[str, Any]:
    """A JSON-serialisable reference profile of every feature and of the predictions, for drift."""
    missing = [feature.name for feature in features if feature.name not in frame.columns]
    if missing:
        raise DataError(f"profile: columns {missing} of the schema are not in the frame")
    profiled: dict[str, Any] = {}
    for feature in features:
        column = frame[feature.name]
        if feature.dtype == "category":
            profiled[feature.name] = categorical_summary(column)
        else:
            profiled[feature.name] = numeric_summary(column.astype("float64"), bins=bins)
        profiled[feature.name]["dtype"] = feature.dtype
    if task == "classification":
        labels = pd.Series(_prediction_labels(predictions, classes), dtype=object)
        prediction_profile = categorical_summary(labels)
        for label in classes or []:
            prediction_profile["frequencies"].setdefault(label, 0.0)
    elif task == "regression":
        values = np.asarray(predictions, dtype=np.float64).ravel()
        prediction_profile = numeric_summary(pd.Series(values), bins=bins)
        kept = values[sample_positions(values.size)]
        prediction_profile["sample"] = [float(v) for v in kept if math.isfinite(v)]
    else:
        raise DataError(f"profile: unknown task {task!r} (expected classification or regression)")
    return {
        "version": PROFILE_VERSION,
        "rows": len(frame),
        "bins": bins,
        "quantile_levels": list(QUANTILE_LEVELS),
        "features": profiled,
        "predictions": prediction_profile,
    }


def _infer_feature(name: str, column: pd.Series[Any], categorical_threshold: int | None) -> FeatureSchema:
    """The schema of one column from its dtype and values."""
    required = not bool(column.isna().any())
    dtype = column.dtype
    is_integer = ptypes.is_integer_dtype(dtype) and not ptypes.is_bool_dtype(dtype)
    few_values = categorical_threshold is not None and column.nunique() <= categorical_threshold
    if (
        ptypes.is_object_dtype(dtype)
        or ptypes.is_string_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
        or (is_integer and few_values)
    ):
        categories = sorted({str(value) for value in column.dropna()})
        return FeatureSchema(name=name, dtype="category", required=required, categories=categories)
    if ptypes.is_bool_dtype(dtype):
        kind: Any = "bool"
    elif is_integer:
        kind = "int"
    elif ptypes.is_float_dtype(dtype):
        kind = "float"
    else:
        raise DataError(f"column {name!r}: unsupported dtype {dtype} (expected number, bool or text)")
    present = column.dropna()
    low = _number(present.min()) if not present.empty else None
    high = _number(present.max()) if not present.empty else None
    return FeatureSchema(name=name, dtype=kind, required=required, min=low, max=high)


def infer_schema(frame: pd.DataFrame, *, categorical_threshold: int | None = None) -> list[FeatureSchema]:
    """One FeatureSchema per column: text → category (sorted), else float/int/bool with min/max.

    With `categorical_threshold`, integer columns with at most that many distinct values become
    categories too (their values as strings).
    """
    return [_infer_feature(str(name), frame[name], categorical_threshold) for name in frame.columns]
