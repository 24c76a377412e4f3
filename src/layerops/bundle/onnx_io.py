"""How a bundle's ONNX graph is fed and what it returns: shared by training (parity) and delivery.

Inputs: one tensor per feature, named after the feature, shape [N, 1].
- numeric features (float/int/bool): float64 (or float32 if the graph says so); missing → NaN,
  which the graph imputes exactly as the native pipeline does;
- categorical features: strings (numpy object array); missing (None/NaN/pd.NA) → "" (the empty
  string, `MISSING_CATEGORY`), which the graph imputes like the native pipeline imputes NaN. A
  real category spelled "" is therefore indistinguishable from a missing value.

Outputs: classification → `label` (int64 [N], the index into the metadata's `classes`) and
`probabilities` ([N, n_classes] float32 or float64); regression → `prediction` ([N, 1] float32
or float64). Callers should cast outputs to float64.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from layerops.bundle.metadata import FeatureSchema
from layerops.errors import DataError

LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"
PREDICTION_OUTPUT = "prediction"
MISSING_CATEGORY = ""
"""What a missing categorical value is fed as."""

_NUMERIC_TYPES = {"tensor(double)": "float64", "tensor(float)": "float32"}
_STRING = "tensor(string)"


def numeric_input_dtype(input_types: Iterable[str]) -> str:
    """The numpy dtype name ("float64"/"float32") of the graph's numeric inputs.

    `input_types` are ONNX type strings such as onnxruntime's `[i.type for i in
    session.get_inputs()]`; a graph with only string inputs reports "float64".
    """
    found = {_NUMERIC_TYPES[kind] for kind in input_types if kind in _NUMERIC_TYPES}
    if len(found) > 1:
        raise DataError(f"ONNX graph mixes numeric input types {sorted(found)}")
    return found.pop() if found else "float64"


def _category_strings(values: pd.Series[Any]) -> npt.NDArray[np.object_]:
    """Column values as str, with every kind of missing value as `MISSING_CATEGORY`."""
    missing = values.isna().to_numpy()
    strings = np.array([str(value) for value in values.to_numpy(dtype=object)], dtype=object)
    strings[missing] = MISSING_CATEGORY
    return strings


class SessionLike(Protocol):
    """What `onnx_feeds` needs from an onnxruntime InferenceSession (no import of onnxruntime)."""

    def get_inputs(self) -> Sequence[Any]:
        """Graph inputs, each with `.name` and `.type` (e.g. "tensor(double)")."""
        ...


def onnx_feeds(
    frame: pd.DataFrame,
    features: list[FeatureSchema],
    numeric_dtype: str | SessionLike = "float64",
) -> dict[str, npt.NDArray[Any]]:
    """The onnxruntime input dict for `frame`: one [N, 1] array per feature, in schema order.

    `numeric_dtype` is "float64"/"float32", or the session itself: then each feature is fed as
    its graph input declares (string or number), and features the graph lacks are left out.
    """
    declared: dict[str, str] | None = None
    if not isinstance(numeric_dtype, str):
        declared = {str(node.name): str(node.type) for node in numeric_dtype.get_inputs()}
        numeric_dtype = numeric_input_dtype(declared.values())
    missing = [feature.name for feature in features if feature.name not in frame.columns]
    if missing:
        raise DataError(f"ONNX feeds: columns {missing} are missing from the input")
    feeds: dict[str, npt.NDArray[Any]] = {}
    for feature in features:
        if declared is not None and feature.name not in declared:
            continue
        column = frame[feature.name]
        as_text = feature.dtype == "category" if declared is None else declared[feature.name] == _STRING
        if as_text:
            feeds[feature.name] = _category_strings(column).reshape(-1, 1)
            continue
        try:
            numbers = pd.to_numeric(column, errors="raise").astype("float64").to_numpy()
        except (TypeError, ValueError) as exc:
            raise DataError(f"ONNX feeds: column {feature.name!r} is not numeric") from exc
        feeds[feature.name] = numbers.astype(numeric_dtype).reshape(-1, 1)
    return feeds
