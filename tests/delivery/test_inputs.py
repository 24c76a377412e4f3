"""The request validator: every bad input is a clear InputError naming the field."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from layerops.bundle import BundleMetadata, FeatureSchema
from layerops.delivery.inputs import InputValidator
from layerops.errors import InputError
from tests.delivery.conftest import schema_metadata
from tests.delivery.frames import feeds_frame


def _metadata() -> BundleMetadata:
    return schema_metadata(
        "parcel",
        "cost",
        [
            FeatureSchema(name="weight", dtype="float", min=0.1, max=40.0),
            FeatureSchema(name="items", dtype="int"),
            FeatureSchema(name="fragile", dtype="bool"),
            FeatureSchema(name="service", dtype="category", categories=["economy", "express"]),
            FeatureSchema(name="note_len", dtype="float", required=False),
        ],
    )


ROW: dict[str, Any] = {"weight": 2.5, "items": 3, "fragile": True, "service": "express", "note_len": None}


def _problem(payload: Any, **options: Any) -> tuple[str, list[dict[str, str]]]:
    with pytest.raises(InputError) as info:
        InputValidator(_metadata(), **options).row_feeds(payload)
    return str(info.value), info.value.problems


def test_valid_row_and_batch_become_feeds_in_schema_order() -> None:
    validator = InputValidator(_metadata())
    frame = feeds_frame(validator, validator.row_feeds(ROW))
    assert list(frame.columns) == ["weight", "items", "fragile", "service", "note_len"]
    assert frame.iloc[0]["weight"] == 2.5 and frame.iloc[0]["fragile"] == 1.0
    assert math.isnan(frame.iloc[0]["note_len"])
    batch = feeds_frame(validator, validator.row_feeds([ROW, {**ROW, "service": "economy", "items": 1.0}]))
    assert batch["service"].tolist() == ["express", "economy"] and batch["items"].dtype == np.float64


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"weight": "heavy"}, "weight", "must be a number, got a string 'heavy'"),
        ({"service": "overnight"}, "service", "unknown category 'overnight'; allowed: economy, express"),
        ({"service": 3}, "service", "must be a string, one of: economy, express"),
        ({"items": 2.5}, "items", "must be a whole number"),
        ({"fragile": 2}, "fragile", "must be a boolean"),
        ({"weight": float("nan")}, "weight", "finite"),
        ({"weight": float("inf")}, "weight", "finite"),
        ({"weight": None}, "weight", "must not be null"),
        ({"colour": "red"}, "colour", "unknown field; the model takes: weight, items"),
        ({"weight": True}, "weight", "must be a number, got a boolean"),
    ],
)
def test_each_bad_value_names_its_field(change: dict[str, Any], field: str, fragment: str) -> None:
    message, problems = _problem({**ROW, **change})
    assert problems[0]["field"] == field and fragment in problems[0]["message"]
    assert message.startswith(f"{field}: ")


def test_missing_required_field() -> None:
    row = {k: v for k, v in ROW.items() if k != "items"}
    _, problems = _problem(row)
    assert problems == [{"field": "items", "message": "field required"}]


def test_optional_field_may_be_absent() -> None:
    row = {k: v for k, v in ROW.items() if k != "note_len"}
    validator = InputValidator(_metadata())
    assert math.isnan(feeds_frame(validator, validator.row_feeds(row)).iloc[0]["note_len"])


def test_batch_problems_carry_the_row_index() -> None:
    message, problems = _problem([ROW, {**ROW, "weight": "x"}, {**ROW, "service": "y"}])
    assert [p["field"] for p in problems] == ["[1].weight", "[2].service"]
    assert "(and 1 more)" in message


def test_extra_fields_can_be_ignored() -> None:
    validator = InputValidator(_metadata(), extra="ignore")
    feeds = validator.row_feeds({**ROW, "colour": "red"})
    assert "colour" not in feeds.columns and feeds.rows == 1


def test_batch_limit_and_shapes() -> None:
    message, _ = _problem([ROW] * 3, max_rows=2)
    assert "batch of 3 rows exceeds the limit of 2" in message
    assert "non-empty list" in _problem([])[0]
    assert "non-empty list" in _problem("text")[0]
    assert _problem([ROW, 5])[1][0] == {"field": "[1]", "message": "must be a JSON object of feature values"}


def test_columns_input() -> None:
    validator = InputValidator(_metadata())
    columns: dict[str, list[Any]] = {
        "weight": [1.0, 2.0],
        "items": [1, 2],
        "fragile": [False, True],
        "service": ["economy", "express"],
    }
    frame = feeds_frame(validator, validator.column_feeds(columns))
    assert len(frame) == 2 and frame["fragile"].tolist() == [0.0, 1.0]
    with pytest.raises(InputError, match="different lengths"):
        validator.column_feeds({"weight": [1.0], "items": [1, 2], "fragile": [True], "service": ["economy"]})
    with pytest.raises(InputError, match=r"service\[1\]: unknown category"):
        validator.column_feeds(
            {"weight": [1.0, 2.0], "items": [1, 2], "fragile": [True, True], "service": ["economy", "x"]}
        )


def test_json_schema_lists_categories_and_required() -> None:
    schema = InputValidator(_metadata()).json_schema()
    assert schema["properties"]["service"]["enum"] == ["economy", "express"]
    assert schema["properties"]["items"]["type"] == "integer"
    assert "note_len" not in schema["required"] and "weight" in schema["required"]
    assert schema["additionalProperties"] is False
