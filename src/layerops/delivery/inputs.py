"""Request validation from a bundle's input schema: rows or columns in, engine feeds out.

One validator serves every transport (native JSON rows, KServe V2 tensors, MLflow's formats), so
a bad request gets the same clear 4xx wherever it arrives. Problems name the field and, for a
category, list the allowed values. The serving path (`row_feeds`, `column_feeds`) builds the
engine's input arrays directly (see `feeds.py`), never a pandas frame.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import chain
from typing import Any, Literal

import numpy as np

from layerops.bundle import BundleMetadata, FeatureSchema
from layerops.delivery.feeds import FeedLayout, Feeds
from layerops.errors import InputError

_MAX_REPORTED = 20
_NUMBER_TYPES = frozenset({float, int})


Values = dict[str, list[Any]]
"""Validated values per feature: floats for numbers, str for categories, None for missing."""


class InputValidator:
    """Checks requests against one model version's schema and builds the input its engine takes.

    Everything per model is looked up once here: feature order, dtypes, allowed category sets and
    the engine's `FeedLayout` (graph input dtypes).
    """

    def __init__(
        self,
        metadata: BundleMetadata,
        *,
        extra: Literal["forbid", "ignore"] = "forbid",
        max_rows: int = 10_000,
        max_fields: int = 1024,
        layout: FeedLayout | None = None,
    ) -> None:
        self.features = list(metadata.features)
        self.names = [f.name for f in self.features]
        self._by_name = {f.name: f for f in self.features}
        self._categories = {f.name: frozenset(f.categories or ()) for f in self.features}
        self.extra = extra
        self.max_rows = max_rows
        self.max_fields = max(max_fields, len(self.names))
        """Most fields one row (or columns one request) may carry: bounds the work of a request."""
        self.layout = layout or FeedLayout.native(self.features)
        """The engine's input layout the feeds follow."""
        specs = self.layout.specs
        numeric = (
            bool(specs)
            and all(f.dtype in ("float", "int") for f in self.features)
            and [spec.name for spec in specs] == self.names
            and len({(spec.text, spec.dtype) for spec in specs}) == 1
            and not specs[0].text
        )
        self._numeric_names = tuple(self.names) if numeric else ()
        """Set when every feature is a number the engine takes in one dtype: the block fast path."""
        self._numeric_dtype = specs[0].dtype if numeric else None
        self._row_getter = _values_getter(self.names) if numeric else None
        self._int_columns = np.array([i for i, f in enumerate(self.features) if f.dtype == "int"], dtype=int)

    # -- the serving path: engine feeds ---------------------------------------------------------

    def row_feeds(self, payload: Any) -> Feeds:
        """One JSON object or a list of them → the engine's feeds (raises `InputError`)."""
        if self._numeric_names:
            records = [payload] if isinstance(payload, Mapping) else payload
            if isinstance(records, list) and 0 < len(records) <= self.max_rows:
                feeds = self._numeric_records(records)
                if feeds is not None:
                    return feeds
        if isinstance(payload, Mapping) and self.max_rows >= 1:
            single = self._single_row(payload)
            if single is not None:
                return self.layout.build(single, 1)
        values, n = self._row_values(payload)
        return self.layout.build(values, n)

    def column_feeds(self, data: Mapping[str, Sequence[Any]]) -> Feeds:
        """Named columns of equal length (V2 tensors, MLflow dataframe_split) → the engine's feeds."""
        if self._numeric_names:
            feeds = self._numeric_columns(data)
            if feeds is not None:
                return feeds
        values, n = self._column_values(data)
        return self.layout.build(values, n)

    # -- the all-numeric fast path: one block, checked vectorised --------------------------------
    # Each returns None at the first sign of a problem; the full path then finds and reports it.

    def _numeric_records(self, records: list[Any]) -> Feeds | None:
        names, getter = self._numeric_names, self._row_getter
        assert getter is not None  # set with _numeric_names
        try:
            table = list(map(getter, records))
        except (KeyError, TypeError):  # a missing field, or a row that is not an object
            return None
        widths = set(map(len, records))
        if widths != {len(names)} and (self.extra == "forbid" or max(widths) > self.max_fields):
            return None  # a field the schema lacks, or too many: the full path reports it
        return self._numeric_block(table, chain.from_iterable(table), by_row=True)

    def _numeric_columns(self, data: Mapping[str, Sequence[Any]]) -> Feeds | None:
        names = self._numeric_names
        try:
            table = [data[name] for name in names]
        except KeyError:
            return None
        if len(data) != len(names) and (self.extra == "forbid" or len(data) > self.max_fields):
            return None
        if not all(type(column) is list for column in table):
            return None
        lengths = {len(column) for column in table}
        if len(lengths) != 1 or not 0 < lengths.pop() <= self.max_rows:
            return None
        return self._numeric_block(table, chain.from_iterable(table), by_row=False)

    def _numeric_block(self, table: list[Any], values: Iterable[Any], *, by_row: bool) -> Feeds | None:
        if not set(map(type, values)) <= _NUMBER_TYPES:  # None, bool, str...: the full path decides
            return None
        try:
            block = np.array(table, dtype=np.float64)
        except (OverflowError, ValueError):
            return None
        if not by_row:
            block = block.T
        if not np.isfinite(block).all():
            return None
        if self._int_columns.size and not (np.mod(block[:, self._int_columns], 1) == 0).all():
            return None
        return Feeds.numeric(block.astype(self._numeric_dtype, copy=False), self._numeric_names)

    def _single_row(self, record: Mapping[str, Any]) -> Values | None:
        """The values of one valid object row, or None when it has a problem (the full path reports it)."""
        values: Values = {}
        found = 0
        for feature in self.features:
            value = record.get(feature.name)
            if value is not None:
                found += 1
            value, message = self._value(feature, value, True)
            if message:
                return None
            values[feature.name] = [value]
        if found < len(record) and self.extra == "forbid":
            return None  # a key the schema lacks (or a null one): let the full path decide
        return values

    # -- rows ---------------------------------------------------------------------------------

    def _row_values(self, payload: Any) -> tuple[Values, int]:
        records = [payload] if isinstance(payload, Mapping) else payload
        if not isinstance(records, list) or not records:
            raise InputError("the body must be a JSON object (one row) or a non-empty list of objects")
        self.check_count(len(records))
        problems: list[dict[str, str]] = []
        columns: Values = {name: [] for name in self.names}
        many = len(records) > 1 or not isinstance(payload, Mapping)
        for index, record in enumerate(records):
            where = f"[{index}]." if many else ""
            if not isinstance(record, Mapping):
                problems.append({"field": f"[{index}]", "message": "must be a JSON object of feature values"})
                continue
            self._check_width(len(record), f"row {index}" if many else "the row")
            if self.extra == "forbid":
                for key in record:
                    if key not in self._by_name:
                        problems.append({"field": f"{where}{key}", "message": self._unknown_field(str(key))})
            for feature in self.features:
                value, message = self._value(feature, record.get(feature.name), feature.name in record)
                if message:
                    problems.append({"field": f"{where}{feature.name}", "message": message})
                columns[feature.name].append(value)
            if len(problems) > _MAX_REPORTED:
                break
        self._raise(problems)
        return columns, len(records)

    # -- columns ------------------------------------------------------------------------------

    def _column_values(self, data: Mapping[str, Sequence[Any]]) -> tuple[Values, int]:
        problems: list[dict[str, str]] = []
        lengths = {len(v) for v in data.values() if isinstance(v, Sequence) and not isinstance(v, str)}
        if len(lengths) > 1:
            raise InputError(f"columns have different lengths: {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        if n == 0:
            raise InputError("no rows: every column is empty")
        self.check_count(n)
        problems = self._field_problems(data)
        columns: Values = {}
        for feature in self.features:
            present = feature.name in data
            raw = data.get(feature.name)
            if present and (not isinstance(raw, Sequence) or isinstance(raw, str)):
                problems.append({"field": feature.name, "message": "must be a list of values"})
                continue
            values = list(raw) if present and raw is not None else [None] * n
            out = []
            for index, item in enumerate(values):
                value, message = self._value(feature, item, present)
                if message:
                    problems.append({"field": f"{feature.name}[{index}]", "message": message})
                    if len(problems) > _MAX_REPORTED:
                        break
                out.append(value)
            columns[feature.name] = out
        self._raise(problems)
        return columns, n

    # -- one value ----------------------------------------------------------------------------

    def _value(  # noqa: C901 - one dispatch per value on the hot path; split, it costs a call per cell
        self, feature: FeatureSchema, value: Any, present: bool
    ) -> tuple[Any, str | None]:
        if value is None:
            if feature.required:
                return None, "field required" if not present else "must not be null"
            return None, None
        if feature.dtype == "category":
            if not isinstance(value, str):
                return None, f"must be a string, one of: {self._allowed(feature)}"
            if self._categories[feature.name] and value not in self._categories[feature.name]:
                return None, f"unknown category {value!r}; allowed: {self._allowed(feature)}"
            return value, None
        if isinstance(value, bool):
            if feature.dtype == "bool":
                return float(value), None
            return None, "must be a number, got a boolean"
        if not isinstance(value, int | float):
            kind = "a boolean" if feature.dtype == "bool" else "a number"
            return None, f"must be {kind}, got {_json_type(value)}"
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range
            number = math.inf
        if not math.isfinite(number):
            return None, "must be a finite number (NaN and infinity are not allowed)"
        if feature.dtype == "int" and not number.is_integer():
            return None, f"must be a whole number, got {value}"
        if feature.dtype == "bool" and number not in (0.0, 1.0):
            return None, f"must be a boolean, got {value}"
        return number, None

    def _allowed(self, feature: FeatureSchema) -> str:
        return ", ".join(feature.categories or []) or "any string"

    def _unknown_field(self, key: str) -> str:
        return f"unknown field; the model takes: {', '.join(self.names)}"

    def check_fields(self, names: Sequence[str]) -> None:
        """Refuse column names before their values are read: too many, or unknown ones (`forbid`)."""
        self._raise(self._field_problems(names))

    def _field_problems(self, names: Iterable[Any]) -> list[dict[str, str]]:
        names = list(names)
        self._check_width(len(names), "the request")
        if self.extra != "forbid":
            return []
        unknown = [str(key) for key in names if key not in self._by_name][:_MAX_REPORTED]
        return [{"field": key, "message": self._unknown_field(key)} for key in unknown]

    def _check_width(self, width: int, what: str) -> None:
        if width > self.max_fields:
            raise InputError(
                f"{what} has {width} fields; the limit is {self.max_fields} (LAYEROPS_MAX_FIELDS), "
                f"and the model takes {len(self.names)}"
            )

    def check_count(self, n: int) -> None:
        """Refuse a request of `n` rows when that is beyond the row limit."""
        if n > self.max_rows:
            raise InputError(f"batch of {n} rows exceeds the limit of {self.max_rows} rows per request")

    @staticmethod
    def _raise(problems: list[dict[str, str]]) -> None:
        if not problems:
            return
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(f"{first['field']}: {first['message']}{more}", problems[:_MAX_REPORTED])

    # -- documentation ------------------------------------------------------------------------

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema of one row (for OpenAPI): types, required fields, enums for categories."""
        properties: dict[str, Any] = {}
        for f in self.features:
            prop: dict[str, Any]
            if f.dtype == "category":
                prop = {"type": "string"}
                if f.categories:
                    prop["enum"] = list(f.categories)
            elif f.dtype == "bool":
                prop = {"type": "boolean"}
            else:
                prop = {"type": "integer" if f.dtype == "int" else "number"}
                if f.min is not None and f.max is not None:
                    prop["description"] = f"observed in training: {f.min:g} to {f.max:g}"
            if not f.required:
                prop = {
                    "anyOf": [prop, {"type": "null"}],
                    **({"description": prop.pop("description")} if "description" in prop else {}),
                }
            properties[f.name] = prop
        return {
            "type": "object",
            "properties": properties,
            "required": [f.name for f in self.features if f.required],
            "additionalProperties": self.extra != "forbid",
        }


def _values_getter(names: Sequence[str]) -> Callable[[Any], tuple[Any, ...]]:
    """record → its values for `names`, as a tuple (KeyError when one is missing)."""
    if len(names) == 1:
        name = names[0]
        return lambda record: (record[name],)
    return operator.itemgetter(*names)


def _json_type(value: Any) -> str:
    if isinstance(value, str):
        return f"a string {value!r}" if len(value) <= 20 else "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
