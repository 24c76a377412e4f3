"""Reference profiles match pandas' own statistics; schemas follow the frame's dtypes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from layerops.bundle.metadata import FeatureSchema
from layerops.bundle.profile import QUANTILE_LEVELS, build_profile, infer_schema
from layerops.errors import DataError


@pytest.fixture
def frame(mixed_frame: pd.DataFrame) -> pd.DataFrame:
    """mixed_frame's features with a few missing categories too."""
    features = mixed_frame.drop(columns="cost")
    features.loc[[3, 50, 70], "origin"] = np.nan
    return features


def test_numeric_profile_matches_pandas(frame: pd.DataFrame) -> None:
    schema = infer_schema(frame)
    profile = build_profile(frame, schema, np.zeros(len(frame)), task="regression", classes=None)
    length = profile["features"]["length"]
    column = frame["length"]
    assert length["kind"] == "numeric"
    assert length["count"] == column.count() == 390
    assert length["missing_share"] == pytest.approx(10 / 400)
    assert length["mean"] == pytest.approx(column.mean())
    assert length["std"] == pytest.approx(column.std())
    assert (length["min"], length["max"]) == (column.min(), column.max())
    for level in QUANTILE_LEVELS:
        assert length["quantiles"][str(level)] == pytest.approx(column.quantile(level))


def test_histogram_edges_are_quantiles_and_counts_cover_every_value(frame: pd.DataFrame) -> None:
    profile = build_profile(frame, infer_schema(frame), np.zeros(400), task="regression", classes=None)
    histogram = profile["features"]["weight"]["histogram"]
    edges = np.array(histogram["edges"])
    assert len(edges) == 11
    assert np.all(np.diff(edges) > 0)
    np.testing.assert_allclose(edges, frame["weight"].quantile(np.linspace(0, 1, 11)).to_numpy())
    assert sum(histogram["counts"]) == 400
    assert all(count in (39, 40, 41) for count in histogram["counts"])


def test_repeated_values_deduplicate_edges() -> None:
    frame = pd.DataFrame({"x": [0.0] * 80 + list(np.arange(1.0, 21.0)), "c": [5.0] * 100})
    schema = infer_schema(frame)
    profile = build_profile(frame, schema, np.zeros(100), task="regression", classes=None, bins=10)
    histogram = profile["features"]["x"]["histogram"]
    assert len(set(histogram["edges"])) == len(histogram["edges"]) < 11
    assert sum(histogram["counts"]) == 100
    constant = profile["features"]["c"]
    assert constant["histogram"] == {"edges": [5.0, 5.0], "counts": [100]}
    assert constant["std"] == 0.0


def test_categorical_profile_matches_value_counts(frame: pd.DataFrame) -> None:
    profile = build_profile(frame, infer_schema(frame), np.zeros(400), task="regression", classes=None)
    origin = profile["features"]["origin"]
    expected = frame["origin"].value_counts(normalize=True)
    assert origin["kind"] == "categorical"
    assert origin["count"] == 397
    assert origin["missing_share"] == pytest.approx(3 / 400)
    assert origin["frequencies"] == pytest.approx(expected.to_dict())
    ranked = sorted(expected.items(), key=lambda item: (-item[1], item[0]))  # most frequent first
    assert list(origin["frequencies"]) == [value for value, _ in ranked]


def test_classification_predictions_are_frequencies_by_label(frame: pd.DataFrame) -> None:
    predictions = np.array([0] * 300 + [2] * 100)
    schema = infer_schema(frame)
    profile = build_profile(frame, schema, predictions, task="classification", classes=["a", "b", "c"])
    assert profile["predictions"]["frequencies"] == {"a": 0.75, "c": 0.25, "b": 0.0}
    labels = np.array(["a"] * 100 + ["c"] * 300, dtype=object)
    profile = build_profile(frame, schema, labels, task="classification", classes=["a", "b", "c"])
    assert profile["predictions"]["frequencies"] == {"c": 0.75, "a": 0.25, "b": 0.0}


def test_regression_predictions_get_the_numeric_summary(frame: pd.DataFrame) -> None:
    predictions = np.linspace(0.0, 10.0, 400)
    profile = build_profile(frame, infer_schema(frame), predictions, task="regression", classes=None)
    summary = profile["predictions"]
    assert summary["count"] == 400
    assert summary["quantiles"]["0.5"] == pytest.approx(5.0)
    assert summary["mean"] == pytest.approx(5.0)


def test_profile_is_strict_json(frame: pd.DataFrame) -> None:
    frame = frame.assign(empty=np.nan, single=[1.0] + [np.nan] * 399)
    profile = build_profile(frame, infer_schema(frame), np.zeros(400), task="regression", classes=None)
    text = json.dumps(profile, allow_nan=False)
    assert json.loads(text) == profile
    assert profile["features"]["empty"]["mean"] is None
    assert profile["features"]["single"]["std"] is None  # ddof=1 of one value


def test_profile_rejects_a_schema_column_missing_from_the_frame(frame: pd.DataFrame) -> None:
    schema = [FeatureSchema(name="nope", dtype="float")]
    with pytest.raises(DataError, match="nope"):
        build_profile(frame, schema, np.zeros(400), task="regression", classes=None)


def test_infer_schema_dtypes(frame: pd.DataFrame) -> None:
    frame = frame.assign(
        count=np.arange(400),
        flag=np.arange(400) % 2 == 0,
        level=pd.Categorical(["high", "low"] * 200),
        code=pd.array([1, 2, None, 4] * 100, dtype="Int64"),
    )
    schema = {feature.name: feature for feature in infer_schema(frame)}
    assert schema["length"] == FeatureSchema(
        name="length",
        dtype="float",
        required=False,
        min=frame["length"].min(),
        max=frame["length"].max(),
    )
    assert schema["weight"].required
    assert schema["origin"].dtype == "category"
    assert schema["origin"].categories == ["east", "north", "south"]
    assert not schema["origin"].required
    assert schema["service"].categories == ["express", "standard"]
    assert (schema["count"].dtype, schema["count"].min, schema["count"].max) == ("int", 0.0, 399.0)
    assert schema["flag"].dtype == "bool"
    assert schema["level"].categories == ["high", "low"]
    assert (schema["code"].dtype, schema["code"].required) == ("int", False)


def test_infer_schema_categorical_threshold_turns_small_int_columns_into_categories() -> None:
    frame = pd.DataFrame({"rooms": [1, 2, 3, 2] * 5, "area": np.arange(20), "x": np.linspace(0, 1, 20)})
    schema = {feature.name: feature for feature in infer_schema(frame, categorical_threshold=3)}
    assert (schema["rooms"].dtype, schema["rooms"].categories) == ("category", ["1", "2", "3"])
    assert schema["area"].dtype == "int"
    assert schema["x"].dtype == "float"


def test_infer_schema_refuses_datetimes() -> None:
    frame = pd.DataFrame({"when": pd.date_range("2024-01-01", periods=3)})
    with pytest.raises(DataError, match="when"):
        infer_schema(frame)
