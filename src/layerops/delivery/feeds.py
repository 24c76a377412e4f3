"""The engine input contract: validated rows as one contiguous [N, 1] array per feature, no DataFrame.

An engine declares its `FeedLayout` once at load (which features it takes, as text or numbers of
which dtype, and what stands for a missing value); the request validator then builds exactly
those arrays, so a request reaches ONNX Runtime without pandas. The ONNX layout follows
`layerops.bundle.onnx_io.onnx_feeds` (numbers in the graph's dtype, categories as str with
`MISSING_CATEGORY` for missing); the native layout is what the native frame holds (float64 with
NaN, object categories with NaN).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from layerops.bundle import FeatureSchema
from layerops.bundle.onnx_io import MISSING_CATEGORY, numeric_input_dtype
from layerops.errors import DataError

Columns = dict[str, npt.NDArray[Any]]
"""Feature name → [N, 1] array, in the engine's feed order."""

_ONNX_STRING = "tensor(string)"
_OBJECT = np.dtype(object)


@dataclass(frozen=True)
class FeedSpec:
    """How an engine takes one feature."""

    name: str
    text: bool
    """Fed as an object array of str (else as numbers of `dtype`)."""
    dtype: np.dtype[Any]
    missing: Any
    """What a missing value is fed as (NaN, or `MISSING_CATEGORY` for ONNX text)."""

    def array(self, values: Sequence[Any]) -> npt.NDArray[Any]:
        """A contiguous [N, 1] array of validated values (None = missing)."""
        if self.text:
            out = np.empty((len(values), 1), dtype=_OBJECT)
            out[:, 0] = [self.missing if v is None else (v if isinstance(v, str) else str(v)) for v in values]
            return out
        if len(values) == 1:
            value = values[0]
            return np.array([[self._number(value)]], dtype=self.dtype)
        return np.array([self._number(v) for v in values], dtype=self.dtype).reshape(-1, 1)

    def _number(self, value: Any) -> float:
        if value is None:
            return math.nan
        if isinstance(value, float):
            return value
        try:  # a category the graph takes as a number (the frame path ran pd.to_numeric on it)
            return float(value)
        except (TypeError, ValueError) as exc:
            raise DataError(f"ONNX feeds: column {self.name!r} is not numeric") from exc


@dataclass(frozen=True)
class FeedLayout:
    """The features an engine takes, in feed order, each with its `FeedSpec`."""

    specs: tuple[FeedSpec, ...]

    @classmethod
    def native(cls, features: Sequence[FeatureSchema]) -> FeedLayout:
        """Every feature in schema order: float64 with NaN, categories as objects with NaN."""
        return cls(
            tuple(
                FeedSpec(f.name, True, _OBJECT, math.nan)
                if f.dtype == "category"
                else FeedSpec(f.name, False, np.dtype(np.float64), math.nan)
                for f in features
            )
        )

    @classmethod
    def onnx(cls, features: Sequence[FeatureSchema], declared: Mapping[str, str]) -> FeedLayout:
        """What an ONNX graph with inputs `declared` (name → ONNX type) takes, as `onnx_feeds` builds it.

        Features the graph lacks are left out; text inputs take str with `MISSING_CATEGORY` for
        missing; numeric inputs all take the graph's one numeric dtype.
        """
        numeric = np.dtype(numeric_input_dtype(declared.values()))
        return cls(
            tuple(
                FeedSpec(f.name, True, _OBJECT, MISSING_CATEGORY)
                if declared[f.name] == _ONNX_STRING
                else FeedSpec(f.name, False, numeric, math.nan)
                for f in features
                if f.name in declared
            )
        )

    def build(self, values: Mapping[str, Sequence[Any]], rows: int) -> Feeds:
        """The feeds of validated per-feature values (each a sequence of `rows` values, None = missing)."""
        return Feeds({spec.name: spec.array(values[spec.name]) for spec in self.specs}, rows)


class Feeds:
    """An engine's input for `rows` rows: its columns, or one numeric block they are cut from.

    The all-numeric fast path validates a request into one [rows, features] block (`numeric`);
    batches stack blocks, and the per-feature columns the engine takes are cut once per batch
    (one transposed copy), not once per request.
    """

    __slots__ = ("_columns", "block", "names", "rows")

    def __init__(
        self,
        columns: Columns | None,
        rows: int,
        *,
        block: npt.NDArray[Any] | None = None,
        names: tuple[str, ...] = (),
    ) -> None:
        if columns is None and block is None:
            raise ValueError("Feeds need columns or a block")
        self._columns = columns
        self.rows = rows
        self.block = block
        self.names = names

    @classmethod
    def numeric(cls, block: npt.NDArray[Any], names: tuple[str, ...]) -> Feeds:
        """Feeds from a [rows, len(names)] block of numbers in the engine's dtype."""
        return cls(None, len(block), block=block, names=names)

    @property
    def columns(self) -> Columns:
        """Feature name → contiguous [rows, 1] array, in feed order."""
        if self._columns is None:
            assert self.block is not None
            by_feature = np.ascontiguousarray(self.block.T)
            self._columns = {name: by_feature[i].reshape(-1, 1) for i, name in enumerate(self.names)}
        return self._columns


def merge(parts: Sequence[Feeds]) -> Feeds:
    """The feeds of several requests stacked in order (one engine call for all of them)."""
    if len(parts) == 1:
        return parts[0]
    names = parts[0].names
    if all(part.block is not None and part.names == names for part in parts):
        return Feeds.numeric(np.concatenate([part.block for part in parts]), names)  # type: ignore[misc]
    first = parts[0].columns
    columns = {name: np.concatenate([part.columns[name] for part in parts]) for name in first}
    return Feeds(columns, sum(part.rows for part in parts))
