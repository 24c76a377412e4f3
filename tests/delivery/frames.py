"""Test-only frames: serving builds engine feeds and never a pandas frame, so the references the
tests compare it with (what the training pipeline feeds a model) are built here, from valid JSON
rows, independently of the serving validator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from layerops.bundle import BundleMetadata
from layerops.delivery.feeds import FeedLayout, Feeds
from layerops.delivery.inputs import InputValidator


def model_frame(metadata: BundleMetadata, rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Valid rows as the model-ready frame: schema order, float64 numbers, object categories, NaN missing."""
    data: dict[str, np.ndarray] = {}
    for feature in metadata.features:
        values = [row.get(feature.name) for row in rows]
        if feature.dtype == "category":
            data[feature.name] = np.array([np.nan if v is None else v for v in values], dtype=object)
        else:
            numbers = [np.nan if v is None else float(v) for v in values]
            data[feature.name] = np.array(numbers, dtype=np.float64)
    return pd.DataFrame(data, columns=metadata.feature_names())


def bundle_reference_frame(metadata: BundleMetadata) -> pd.DataFrame:
    """The bundle's reference rows as a model-ready frame."""
    return model_frame(metadata, [row["features"] for row in metadata.reference_rows])


def feeds_frame(validator: InputValidator, feeds: Feeds) -> pd.DataFrame:
    """A native-layout validator's feeds as a frame in schema order (for readable assertions)."""
    assert validator.layout == FeedLayout.native(validator.features), "a native-layout validator"
    columns = feeds.columns
    return pd.DataFrame({name: columns[name][:, 0] for name in validator.names}, columns=validator.names)


def full_check_validator(metadata: BundleMetadata) -> InputValidator:
    """A validator that never takes the all-numeric block path (its layout leaves a feature out)."""
    numbers = [f for f in metadata.features if f.dtype != "category"]
    declared = {f.name: "tensor(double)" for f in numbers[:-1]}
    return InputValidator(metadata, layout=FeedLayout.onnx(metadata.features, declared))
