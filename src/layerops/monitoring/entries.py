"""The prediction log's entries and how a batch of them becomes one Arrow table (`records.py` layout)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from layerops.bundle import FeatureSchema
from layerops.monitoring.records import input_column, proba_column

Inputs = Callable[[], Mapping[str, npt.NDArray[Any]]]
"""The request's validated inputs, feature → [rows, 1] array; called on the writer thread."""

MISSING_TEXT = frozenset({""})
"""Text the engines feed for a missing category (ONNX's `MISSING_CATEGORY`): logged as null."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One answered request, as `record` hands it over: references only, converted later."""

    model: str
    version: int
    variant: str | None
    request_id: str
    time: float
    """Seconds since the epoch when the answer was ready."""
    latency_ms: float
    rows: int
    inputs: Inputs
    features: Sequence[FeatureSchema]
    values: npt.NDArray[Any]
    """Class indices (classification) or values (regression), one per row."""
    probabilities: npt.NDArray[Any] | None
    classes: Sequence[str] | None


def build_table(entries: Sequence[Entry]) -> pa.Table:
    """One table of the log layout (`records.py`) from entries of one model (versions may differ)."""
    rows = [entry.rows for entry in entries]
    total = sum(rows)
    features = _union_features(entries)
    classes = _union_classes(entries)
    columns: dict[str, pa.Array] = {
        "request_id": pa.array(
            np.repeat(np.array([e.request_id for e in entries], dtype=object), rows), pa.string()
        ),
        "row": pa.array(np.concatenate([np.arange(n, dtype=np.int32) for n in rows]), pa.int32()),
        "time": pa.array(
            np.repeat(np.array([round(e.time * 1e6) for e in entries], dtype=np.int64), rows),
            pa.timestamp("us", tz="UTC"),
        ),
        "model": pa.array(np.repeat(np.array([e.model for e in entries], dtype=object), rows), pa.string()),
        "version": pa.array(
            np.repeat(np.array([e.version for e in entries], dtype=np.int32), rows), pa.int32()
        ),
        "variant": pa.array(
            np.repeat(np.array([e.variant for e in entries], dtype=object), rows), pa.string()
        ),
        "latency_ms": pa.array(np.repeat(np.array([e.latency_ms for e in entries]), rows), pa.float64()),
        "prediction": _predictions(entries, total),
    }
    for label in classes:
        columns[proba_column(label)] = _probabilities(entries, label, total)
    inputs = [entry.inputs() for entry in entries]
    for name, categorical in features.items():
        columns[input_column(name)] = _input(entries, inputs, name, categorical)
    return pa.table(columns)


def _union_features(entries: Sequence[Entry]) -> dict[str, bool]:
    """Feature name → categorical, over every entry's schema, in first-seen order."""
    seen: dict[str, bool] = {}
    for schema in {id(e.features): e.features for e in entries}.values():
        for feature in schema:
            seen.setdefault(feature.name, feature.dtype == "category")
    return seen


def _union_classes(entries: Sequence[Entry]) -> list[str]:
    seen: dict[str, None] = {}
    for entry in entries:
        if entry.probabilities is not None:
            for label in entry.classes or ():
                seen.setdefault(label, None)
    return list(seen)


def _predictions(entries: Sequence[Entry], total: int) -> pa.Array:
    if entries[0].classes:  # a model's task does not change between its versions' entries here
        labels: list[str | None] = []
        for entry in entries:
            names = entry.classes or ()
            labels.extend(names[int(i)] for i in np.asarray(entry.values).ravel())
        return pa.array(labels, pa.string())
    values = np.concatenate([np.asarray(e.values, dtype=np.float64).ravel() for e in entries])
    return pa.array(values, pa.float64())


def _probabilities(entries: Sequence[Entry], label: str, total: int) -> pa.Array:
    out = np.full(total, math.nan)
    start = 0
    for entry in entries:
        if entry.probabilities is not None and entry.classes and label in entry.classes:
            column = list(entry.classes).index(label)
            out[start : start + entry.rows] = np.asarray(entry.probabilities)[:, column]
        start += entry.rows
    return pa.array(out, pa.float64(), from_pandas=True)


def _input(
    entries: Sequence[Entry], inputs: list[Mapping[str, npt.NDArray[Any]]], name: str, categorical: bool
) -> pa.Array:
    if categorical:
        text: list[Any] = []
        for entry, given in zip(entries, inputs, strict=True):
            column = given.get(name)
            if column is None:
                text.extend([None] * entry.rows)
                continue
            text.extend(None if _missing_text(v) else str(v) for v in np.asarray(column).ravel())
        return pa.array(text, pa.string())
    parts = []
    for entry, given in zip(entries, inputs, strict=True):
        column = given.get(name)
        parts.append(
            np.full(entry.rows, math.nan) if column is None else np.asarray(column, dtype=np.float64).ravel()
        )
    return pa.array(np.concatenate(parts), pa.float64(), from_pandas=True)


def _missing_text(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value in MISSING_TEXT
