"""The row checks: the server's input rules on whole Arrow columns, each bad row with its reasons."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from layerops.batch.validation import RowChecker
from layerops.bundle import FeatureSchema
from layerops.errors import DataError

FEATURES = [
    FeatureSchema(name="x", dtype="float"),
    FeatureSchema(name="opt", dtype="float", required=False),
    FeatureSchema(name="n", dtype="int"),
    FeatureSchema(name="flag", dtype="bool"),
    FeatureSchema(name="color", dtype="category", categories=["blue", "red"]),
]


def _check(columns: dict[str, list[object]], types: dict[str, pa.DataType] | None = None):  # type: ignore[no-untyped-def]
    types = types or {}
    table = pa.table({name: pa.array(values, types.get(name)) for name, values in columns.items()})
    return RowChecker(FEATURES).check(table)


def test_text_is_parsed_like_the_server_reads_json_and_bad_values_are_named() -> None:
    text = pa.string()
    checked = _check(
        {
            "x": ["1.5", "abc", None, "inf", "2", " 3", "1e3"],
            "opt": [None, "1", "2", "3", "4", "5", "6"],
            "n": ["1", "2", "2.5", "3", "4", "5", "6"],
            "flag": ["True", "false", "1", "0", "yes", "FALSE", "0"],
            "color": ["red", "blue", "green", "red", None, "red", "blue"],
        },
        dict.fromkeys(("x", "opt", "n", "flag", "color"), text),
    )
    assert checked.valid.tolist() == [True, False, False, False, False, False, True]
    assert checked.reasons[1] == "x: not a number: 'abc'"
    assert checked.reasons[2] == (
        "x: missing; the model requires it; n: must be a whole number, got 2.5; "
        "color: unknown category 'green'; allowed: blue, red"
    )
    assert checked.reasons[3] == "x: must be a finite number, got inf"
    assert checked.reasons[4] == (
        "flag: must be a boolean (true/false or 1/0), got 'yes'; color: missing; the model requires it"
    )
    assert checked.reasons[5] == "x: not a number: ' 3'"  # as Arrow's cast: no stray spaces
    assert checked.values["x"][[0, 6]].tolist() == [1.5, 1000.0]
    assert checked.values["flag"].tolist()[:4] == [1.0, 0.0, 1.0, 0.0]
    assert math.isnan(checked.values["opt"][0])  # optional and missing: scored as missing
    assert checked.rejected == 5
    good = checked.valid_values()
    np.testing.assert_array_equal(good["opt"], [math.nan, 6.0])
    assert [good[name].tolist() for name in ("x", "n", "flag", "color")] == [
        [1.5, 1000.0],
        [1.0, 6.0],
        [1.0, 0.0],
        ["red", "blue"],
    ]


def test_typed_columns_follow_the_same_rules() -> None:
    checked = _check(
        {
            "x": [1.0, float("nan"), 3.0, 4.0],
            "opt": [1.0, 2.0, 3.0, None],
            "n": [1, 2, 3, 4],
            "flag": [1.0, 0.0, 2.0, 1.0],
            "color": ["red", "red", "red", "red"],
        }
    )
    assert checked.reasons.tolist() == [
        None,
        "x: missing; the model requires it",  # NaN is a missing value, as in layerops.load(...).predict
        "flag: must be a boolean (true/false or 1/0), got 2",
        None,
    ]
    booleans = _check({"x": [True, False], "opt": [None, None], "n": [1, 1], "flag": [True, False],
                       "color": ["red", "blue"]})  # fmt: skip
    assert booleans.reasons.tolist() == ["x: must be a number, got a boolean"] * 2
    assert booleans.values["flag"].tolist() == [1.0, 0.0]


def test_an_integer_category_column_is_read_as_its_text() -> None:
    checker = RowChecker([FeatureSchema(name="zone", dtype="category", categories=["1", "2"])])
    checked = checker.check(pa.table({"zone": pa.array([1, 2, 3], pa.int64())}))
    assert checked.values["zone"].tolist() == ["1", "2", "3"]
    assert checked.reasons.tolist() == [None, None, "zone: unknown category '3'; allowed: 1, 2"]


def test_a_column_no_row_could_use_is_refused_before_scoring() -> None:
    checker = RowChecker(FEATURES)
    usable = pa.schema([("x", pa.float64()), ("n", pa.int32()), ("flag", pa.bool_()), ("color", pa.string())])
    checker.check_schema(usable, "in.parquet")  # the optional column may be absent
    with pytest.raises(DataError) as missing:
        checker.check_schema(pa.schema([("x", pa.float64()), ("id", pa.int64())]), "in.parquet")
    assert str(missing.value) == (
        "in.parquet: the model needs columns n, flag, color, which the input lacks (it has x, id)"
    )
    with pytest.raises(DataError) as typed:
        checker.check_schema(usable.set(0, pa.field("x", pa.timestamp("s"))), "in.parquet")
    assert str(typed.value) == "in.parquet: column 'x' holds timestamp[s]; the model takes a float value"
    with pytest.raises(DataError, match="column 'color' holds double; the model takes text categories"):
        checker.check_schema(usable.set(3, pa.field("color", pa.float64())), "in.parquet")
