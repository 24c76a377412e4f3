"""The prediction log's entries and how a batch of them becomes one Arrow table (`records.py` layout)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from layerops.bundle import FeatureSchema
from layerops.monitoring.records import input_column, proba_column


class InputRows(Protocol):
    """A request's validated inputs as the engine took them (the delivery layer's `Feeds`):
    read on the writer thread, never on the request path."""

    rows: int
    block: npt.NDArray[Any] | None
    """All-numeric inputs as one [rows, len(names)] block (None: use `columns`)."""
    names: tuple[str, ...]

    @property
    def columns(self) -> Mapping[str, npt.NDArray[Any]]:
        """Feature name → [rows, 1] array."""
        ...


@dataclass(frozen=True)
class ColumnRows:
    """`InputRows` from per-feature arrays."""

    columns: Mapping[str, npt.NDArray[Any]]
    rows: int
    block: None = None
    names: tuple[str, ...] = ()


MISSING_TEXT = frozenset({""})
"""Text the engines feed for a missing category (ONNX's `MISSING_CATEGORY`): logged as null."""


@dataclass(slots=True)
class Entry:
    """One answered request, as `record` hands it over: references only, converted later.

    Not frozen: a frozen dataclass sets each field through `object.__setattr__`, and one is made
    per request on the event loop."""

    model: str
    version: int
    variant: str | None
    request_id: str
    time: float
    """Seconds since the epoch when the answer was ready."""
    latency_ms: float
    rows: int
    inputs: InputRows
    features: Sequence[FeatureSchema]
    values: npt.NDArray[Any]
    """Class indices (classification) or values (regression), one per row."""
    probabilities: npt.NDArray[Any] | None
    classes: Sequence[str] | None


def build_table(entries: Sequence[Entry]) -> pa.Table:
    """One table of the log layout (`records.py`) from entries of one model (versions may differ)."""
    rows = [entry.rows for entry in entries]
    total = sum(rows)
    single = total == len(entries)  # one row per request: nothing to repeat

    def each(values: list[Any], kind: pa.DataType) -> pa.Array:
        return pa.array(values if single else np.repeat(np.array(values, dtype=object), rows), kind)

    columns: dict[str, pa.Array] = {
        "request_id": each([e.request_id for e in entries], pa.string()),
        "row": pa.array(
            np.zeros(total, np.int32)
            if single
            else np.concatenate([np.arange(n, dtype=np.int32) for n in rows])
        ),
        "time": pa.array(
            np.repeat(np.array([e.time for e in entries]) * 1e6, rows).round().astype(np.int64),
            pa.timestamp("us", tz="UTC"),
        ),
        "model": each([e.model for e in entries], pa.string()),
        "version": pa.array(np.repeat(np.array([e.version for e in entries], dtype=np.int32), rows)),
        "variant": each([e.variant for e in entries], pa.string()),
        "latency_ms": pa.array(np.repeat(np.array([e.latency_ms for e in entries]), rows), pa.float64()),
        "prediction": _predictions(entries, total),
    }
    for label in _union_classes(entries):
        columns[proba_column(label)] = _probabilities(entries, label, total)
    stacked = _stacked(entries)
    inputs = [] if stacked is not None else [entry.inputs.columns for entry in entries]
    for name, categorical in _union_features(entries).items():
        if stacked is not None:
            column = stacked.get(name)
            columns[input_column(name)] = pa.array(
                np.full(total, math.nan) if column is None else column, pa.float64(), from_pandas=True
            )
        else:
            columns[input_column(name)] = _input(entries, inputs, name, categorical)
    return pa.table(columns)


def _stacked(entries: Sequence[Entry]) -> dict[str, npt.NDArray[np.float64]] | None:
    """Every entry's numeric block stacked once, as float64 columns; None unless all have blocks
    of the same features (the all-numeric fast path: no per-request column dicts)."""
    names = entries[0].inputs.names
    blocks = [entry.inputs.block for entry in entries]
    if not names or any(b is None or e.inputs.names != names for b, e in zip(blocks, entries, strict=True)):
        return None
    stacked = np.concatenate(blocks).astype(np.float64, copy=False)  # type: ignore[arg-type]
    return {name: stacked[:, i] for i, name in enumerate(names)}


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


def _same_classes(entries: Sequence[Entry]) -> bool:
    first = entries[0].classes
    return all(entry.classes is first or entry.classes == first for entry in entries)


def _predictions(entries: Sequence[Entry], total: int) -> pa.Array:
    classes = entries[0].classes
    if classes and _same_classes(entries):  # one vectorised lookup (the usual case: one version)
        indices = np.concatenate([np.asarray(e.values).ravel() for e in entries]).astype(np.intp)
        return pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), pa.array(classes)).cast(
            pa.string()
        )
    if classes:  # a model's task does not change between its versions' entries here
        labels: list[str | None] = []
        for entry in entries:
            names = entry.classes or ()
            labels.extend(names[int(i)] for i in np.asarray(entry.values).ravel())
        return pa.array(labels, pa.string())
    values = np.concatenate([np.asarray(e.values, dtype=np.float64).ravel() for e in entries])
    return pa.array(values, pa.float64())


def _probabilities(entries: Sequence[Entry], label: str, total: int) -> pa.Array:
    classes = entries[0].classes
    if classes and label in classes and _same_classes(entries):
        if all(entry.probabilities is not None for entry in entries):
            column = list(classes).index(label)
            stacked = np.concatenate([np.asarray(e.probabilities)[:, column] for e in entries])
            return pa.array(stacked.astype(np.float64, copy=False), pa.float64(), from_pandas=True)
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
