"""Row checks for batch scoring: the server's input rules, applied to whole Arrow columns.

The request validator (`layerops.delivery.inputs`) belongs to the delivery layer, which batch
scoring may not import, and it checks Python values one at a time (about a microsecond each:
seconds per million rows). Its rules are the bundle's input schema, so they are applied here
to columns, vectorised: a required value must be present, a number finite (whole for `int`, 0/1
or true/false for `bool`), a category one of those seen in training. NaN and null are a missing
value, as in `layerops.load(...).predict(frame)`.

Unlike a request, a partition is not refused for a bad row: the row is set aside with its
reasons (the rejects) and the others are scored. What no row can fix, a required column that is
absent or a column of a type the model cannot take (a timestamp for a number), is a
`DataError` before anything is scored.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from layerops.bundle import FeatureSchema
from layerops.errors import DataError

Values = dict[str, npt.NDArray[Any]]
"""Feature → one value per row: float64 (NaN when missing) or, for categories, str objects (None)."""

_SHOWN_CHARACTERS = 40
_SHOWN_COLUMNS = 12
_TAKES = {"number": ("number", "integer", "bool", "text", "null"), "category": ("text", "integer", "null")}
"""A feature kind → the Arrow column kinds it accepts (an integer category is read as its text)."""


@dataclass(frozen=True)
class Checked:
    """A partition's feature values and, for each bad row, why it cannot be scored."""

    rows: int
    values: Values
    reasons: npt.NDArray[np.object_]
    """One entry per row: None when the row is good, else its problems joined by `; `."""

    @functools.cached_property
    def valid(self) -> npt.NDArray[np.bool_]:
        """True for every row that can be scored."""
        return pd.isna(self.reasons)

    @property
    def rejected(self) -> int:
        """How many rows cannot be scored."""
        return self.rows - int(np.count_nonzero(self.valid))

    def valid_values(self) -> Values:
        """The good rows' values (the arrays themselves when every row is good)."""
        if not self.rejected:
            return self.values
        keep = self.valid
        return {name: values[keep] for name, values in self.values.items()}


class RowChecker:
    """Checks partitions against one model's input schema (looked up once, here)."""

    def __init__(self, features: Sequence[FeatureSchema]) -> None:
        self.features = list(features)
        self._allowed = {f.name: pa.array(f.categories, pa.string()) for f in self.features if f.categories}

    def check_schema(self, schema: pa.Schema, where: str) -> None:
        """Refuse an input no row of which could be scored: a required column absent, or unusable."""
        names = set(schema.names)
        missing = [f.name for f in self.features if f.required and f.name not in names]
        if missing:
            has = ", ".join(schema.names[:_SHOWN_COLUMNS]) + (", …" if len(names) > _SHOWN_COLUMNS else "")
            raise DataError(
                f"{where}: the model needs column{'s' if len(missing) > 1 else ''} {', '.join(missing)}, "
                f"which the input lacks (it has {has or 'no columns'})"
            )
        for feature in self.features:
            if feature.name not in names:
                continue
            dtype = schema.field(feature.name).type
            wanted = "category" if feature.dtype == "category" else "number"
            if _kind(dtype) not in _TAKES[wanted]:
                what = "text categories" if wanted == "category" else f"a {feature.dtype} value"
                raise DataError(f"{where}: column {feature.name!r} holds {dtype}; the model takes {what}")

    def check(self, table: pa.Table) -> Checked:
        """Every feature's values and every bad row's reasons (columns checked by `check_schema`)."""
        rows = table.num_rows
        reasons: npt.NDArray[np.object_] = np.full(rows, None, dtype=object)
        values: Values = {}
        for feature in self.features:
            column = table.column(feature.name) if feature.name in table.column_names else None
            check = _categories if feature.dtype == "category" else _numbers
            values[feature.name] = check(feature, column, rows, reasons, self._allowed.get(feature.name))
        return Checked(rows, values, reasons)


def _numbers(
    feature: FeatureSchema,
    column: pa.ChunkedArray | None,
    rows: int,
    reasons: npt.NDArray[np.object_],
    allowed: pa.Array | None,
) -> npt.NDArray[np.float64]:
    name = feature.name
    kind = "null" if column is None else _kind(column.type)
    unparsed: Any = False
    if column is None or kind == "null":
        values = np.full(rows, np.nan)
    elif kind == "text":
        values, unparsed = _parse_numbers(column, boolean=feature.dtype == "bool")
        what = "must be a boolean (true/false or 1/0), got" if feature.dtype == "bool" else "not a number:"
        _add(reasons, unparsed, lambda i: f"{name}: {what} {_show(column[i].as_py())}")
    else:
        values = _float64(column)
        if kind == "bool" and feature.dtype != "bool":
            _add(reasons, ~np.isnan(values), f"{name}: must be a number, got a boolean")
    missing = np.isnan(values)
    if feature.required:
        _add(reasons, missing & ~unparsed, f"{name}: missing; the model requires it")
    infinite = np.isinf(values)
    _add(reasons, infinite, lambda i: f"{name}: must be a finite number, got {values[i]}")
    finite = np.where(missing | infinite, 0.0, values)
    if feature.dtype == "int":
        _add(reasons, np.mod(finite, 1) != 0, lambda i: f"{name}: must be a whole number, got {values[i]:g}")
    elif feature.dtype == "bool":
        odd = (finite != 0) & (finite != 1)
        _add(reasons, odd, lambda i: f"{name}: must be a boolean (true/false or 1/0), got {values[i]:g}")
    return values


def _categories(
    feature: FeatureSchema,
    column: pa.ChunkedArray | None,
    rows: int,
    reasons: npt.NDArray[np.object_],
    allowed: pa.Array | None,
) -> npt.NDArray[np.object_]:
    name = feature.name
    strings = None
    if column is None or _kind(column.type) == "null":
        text: npt.NDArray[np.object_] = np.full(rows, None, dtype=object)
    else:
        strings = column if pa.types.is_string(column.type) else column.cast(pa.string())
        text = strings.to_numpy(zero_copy_only=False)
    missing = pd.isna(text)
    if allowed is not None and strings is not None:
        known = pc.is_in(strings, value_set=allowed).to_numpy(zero_copy_only=False)
        listed = ", ".join(allowed.to_pylist())
        _add(
            reasons,
            ~known & ~missing,
            lambda i: f"{name}: unknown category {_show(text[i])}; allowed: {listed}",
        )
    if feature.required:
        _add(reasons, missing, f"{name}: missing; the model requires it")
    return text


def _parse_numbers(column: pa.ChunkedArray, *, boolean: bool) -> tuple[npt.NDArray[np.float64], Any]:
    """Text → float64 (NaN for null and for what does not parse) and the mask of what did not parse.

    Arrow's cast parses a column in C++; only a column holding a bad value takes the per-value path
    (Python's `float`, refusing the spaces and `_` it would otherwise accept, as the cast does).
    """
    if not pa.types.is_string(column.type):
        column = column.cast(pa.string())
    if boolean:  # true/false as written by pandas ("True") or by hand
        lower = pc.utf8_lower(column)
        column = pc.if_else(pc.equal(lower, "true"), "1", pc.if_else(pc.equal(lower, "false"), "0", column))
    try:
        return _float64(pc.cast(column, pa.float64())), np.zeros(len(column), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    texts = column.to_pylist()
    values = np.full(len(texts), np.nan)
    unparsed = np.zeros(len(texts), dtype=bool)
    for index, text in enumerate(texts):
        if text is None:
            continue
        try:
            if text != text.strip() or "_" in text:
                raise ValueError(text)
            values[index] = float(text)
        except ValueError:
            unparsed[index] = True
    return values, unparsed


def _float64(column: pa.ChunkedArray) -> npt.NDArray[np.float64]:
    values = column.cast(pa.float64()).to_numpy()
    return np.asarray(values, dtype=np.float64)


def _add(reasons: npt.NDArray[np.object_], mask: Any, message: str | Callable[[int], str]) -> None:
    for index in np.flatnonzero(mask):
        text = message if isinstance(message, str) else message(int(index))
        previous = reasons[index]
        reasons[index] = text if previous is None else f"{previous}; {text}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARACTERS else text[: _SHOWN_CHARACTERS - 1] + "…"


def _kind(dtype: pa.DataType) -> str:
    if pa.types.is_dictionary(dtype):
        return _kind(dtype.value_type)
    if pa.types.is_null(dtype):
        return "null"
    if pa.types.is_boolean(dtype):
        return "bool"
    if pa.types.is_integer(dtype):
        return "integer"
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "number"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "text"
    return "other"
