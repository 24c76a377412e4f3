"""Scoring two bundles on the same evaluation rows: the frames their pipelines take, the truth,
and their outputs in one label space (the two models may know different classes)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from layerops.bundle import BundleMetadata, ModelBundle
from layerops.errors import DataError, LayeropsError
from layerops.releases.bootstrap import Outputs


def label(value: object) -> str:
    """A class label as text, as training encodes targets (integral floats lose their '.0')."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, np.generic):
        return label(value.item())
    return str(value)


def model_frame(data: pd.DataFrame, metadata: BundleMetadata, who: str) -> pd.DataFrame:
    """`data`'s columns as the native pipeline was fitted on them: numbers (and booleans) as
    float64 with NaN, categories as text objects with NaN. Optional features that are absent are
    all missing; an absent required one, or text in a numeric column, is a `DataError`."""
    missing = [f.name for f in metadata.features if f.required and f.name not in data.columns]
    if missing:
        raise DataError(
            f"the evaluation data lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"that {who} needs"
        )
    columns: dict[str, Any] = {}
    for feature in metadata.features:
        if feature.name not in data.columns:
            columns[feature.name] = np.full(len(data), np.nan)
            continue
        series = data[feature.name]
        if feature.dtype == "category":
            text = series.astype(object).map(str).astype(object)
            columns[feature.name] = text.where(series.notna(), np.nan).to_numpy(dtype=object)
            continue
        numbers = pd.to_numeric(series, errors="coerce").astype("float64")
        bad = int((numbers.isna() & series.notna()).sum())
        if bad:
            raise DataError(f"column {feature.name!r} of the evaluation data has {bad} non-numeric values")
        columns[feature.name] = numbers.to_numpy()
    return pd.DataFrame(columns, columns=metadata.feature_names())


def usable_rows(data: pd.DataFrame, metadata: BundleMetadata) -> pd.DataFrame:
    """The rows of `data` with a target value (a `DataError` when the column is absent or empty)."""
    target = metadata.target
    if target not in data.columns:
        raise DataError(f"the evaluation data has no target column {target!r}")
    values = data[target]
    if metadata.task == "regression":
        values = pd.to_numeric(values, errors="coerce")
    kept = data.loc[values.notna().to_numpy()].reset_index(drop=True)
    if kept.empty:
        raise DataError(f"the evaluation data has no rows with a value in {target!r}")
    return kept


def shared_labels(data: pd.DataFrame, bundles: Sequence[ModelBundle]) -> list[str]:
    """Every class label of the truth and of the models, sorted: the space both are scored in."""
    target = bundles[0].metadata.target
    labels = {label(v) for v in data[target].tolist()}
    for bundle in bundles:
        labels.update(bundle.metadata.classes or [])
    return sorted(labels)


def outputs(bundle: ModelBundle, data: pd.DataFrame, labels: list[str] | None, who: str) -> Outputs:
    """`bundle`'s native predictions on `data` (rows with a target) with the truth: class codes
    and probabilities over `labels` for a classifier, values for a regressor."""
    metadata = bundle.metadata
    if bundle.model is None:
        raise LayeropsError(f"{who}: the gate scores the native model, but it was loaded without it")
    frame = model_frame(data, metadata, who)
    target = data[metadata.target]
    if labels is None:
        truth = pd.to_numeric(target, errors="coerce").to_numpy(dtype=np.float64)
        values = np.asarray(bundle.model.predict(frame), dtype=np.float64).reshape(-1)
        return Outputs(truth=truth, predictions=values)
    index = {name: code for code, name in enumerate(labels)}
    truth_codes = np.asarray([index[label(v)] for v in target.tolist()], dtype=np.intp)
    proba = np.asarray(bundle.model.predict_proba(frame), dtype=np.float64)
    columns = _column_labels(bundle, proba.shape[1], who)
    shared = np.zeros((len(frame), len(labels)), dtype=np.float64)
    shared[:, [index[name] for name in columns]] = proba
    totals = shared.sum(axis=1, keepdims=True)
    shared = np.divide(shared, totals, out=np.full_like(shared, 1.0 / len(labels)), where=totals > 0)
    predicted = np.asarray([index[columns[i]] for i in proba.argmax(axis=1)], dtype=np.intp)
    return Outputs(truth=truth_codes, predictions=predicted, probabilities=shared)


def _column_labels(bundle: ModelBundle, width: int, who: str) -> list[str]:
    """The class label of each probability column: the metadata's classes, or where the fitted
    model knows fewer classes (a class absent from its training rows), the ones it knows."""
    classes = list(bundle.metadata.classes or [])
    fitted = getattr(bundle.model, "classes_", None)
    if fitted is not None and len(fitted) == width and len(fitted) != len(classes):
        known = [_fitted_label(value, classes) for value in fitted]
        if all(name is not None for name in known):
            return [str(name) for name in known]
    if len(classes) != width:
        raise LayeropsError(
            f"{who}: the model gives {width} probability columns for {len(classes)} classes in its metadata"
        )
    return classes


def _fitted_label(value: Any, classes: list[str]) -> str | None:
    """A fitted model's class: an index into the metadata's classes (layerops pipelines), or a label."""
    number = value.item() if isinstance(value, np.generic) else value
    if isinstance(number, int | float) and not isinstance(number, bool) and math.isfinite(number):
        position = int(number)
        return classes[position] if position == number and 0 <= position < len(classes) else None
    return str(number)
