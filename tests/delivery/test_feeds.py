"""The pandas-free serving path: validator feeds equal what `onnx_feeds` built, and answers do not change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from layerops.bundle import BundleMetadata, FeatureSchema
from layerops.bundle.onnx_io import PREDICTION_OUTPUT, PROBABILITIES_OUTPUT, onnx_feeds
from layerops.delivery.engines import EngineOutput, NativeEngine
from layerops.delivery.feeds import FeedLayout, merge
from layerops.delivery.inputs import InputValidator
from layerops.delivery.settings import ServeSettings
from layerops.errors import InputError
from layerops.repository.factory import open_repository
from tests.delivery.conftest import IRIS_ROWS, SHIPPING_ROWS, schema_metadata
from tests.delivery.frames import full_check_validator, model_frame


@dataclass(frozen=True)
class Node:
    name: str
    type: str


class FakeSession:
    """What `onnx_feeds` reads from an onnxruntime session: the graph's inputs."""

    def __init__(self, declared: dict[str, str]) -> None:
        self.declared = declared

    def get_inputs(self) -> list[Node]:
        return [Node(name, kind) for name, kind in self.declared.items()]


def _metadata() -> BundleMetadata:
    return schema_metadata(
        "parcel",
        "cost",
        [
            FeatureSchema(name="weight", dtype="float"),
            FeatureSchema(name="items", dtype="int", required=False),
            FeatureSchema(name="fragile", dtype="bool"),
            FeatureSchema(
                name="service", dtype="category", categories=["economy", "express"], required=False
            ),
            FeatureSchema(name="note", dtype="category", required=False),
            FeatureSchema(name="unused", dtype="float", required=False),
        ],
    )


ROWS: list[dict[str, Any]] = [
    {"weight": 2.5, "items": 3, "fragile": True, "service": "express", "note": "fragile glass"},
    {"weight": 0.25, "items": None, "fragile": False, "service": None},
    {"weight": 7.0, "fragile": 1, "note": ""},
]


@pytest.mark.parametrize("numeric", ["tensor(double)", "tensor(float)"])
def test_onnx_layout_feeds_equal_what_onnx_feeds_built_from_the_frame(numeric: str) -> None:
    declared = {"weight": numeric, "items": numeric, "fragile": numeric, "service": "tensor(string)"}
    declared["note"] = "tensor(string)"  # "unused" is not a graph input: left out, as onnx_feeds does
    metadata = _metadata()
    validator = InputValidator(metadata, layout=FeedLayout.onnx(metadata.features, declared))
    expected = onnx_feeds(model_frame(metadata, ROWS), list(metadata.features), FakeSession(declared))
    for payload, rows in ((ROWS, ROWS), (ROWS[1], [ROWS[1]])):
        got = validator.row_feeds(payload)
        reference = onnx_feeds(model_frame(metadata, rows), list(metadata.features), FakeSession(declared))
        assert got.rows == len(rows) and list(got.columns) == list(reference)
        for name, array in reference.items():
            mine = got.columns[name]
            assert mine.dtype == array.dtype and mine.shape == array.shape and mine.flags["C_CONTIGUOUS"]
            if array.dtype == object:
                assert mine.tolist() == array.tolist()
            else:
                np.testing.assert_array_equal(mine, array)  # NaN where NaN
    assert expected["service"].tolist() == [["express"], [""], [""]]  # missing → MISSING_CATEGORY


def test_the_engine_layout_does_not_change_the_validators_errors() -> None:
    metadata = _metadata()
    declared = {"weight": "tensor(float)", "items": "tensor(float)", "service": "tensor(string)"}
    native = InputValidator(metadata)
    onnx = InputValidator(metadata, layout=FeedLayout.onnx(metadata.features, declared))
    for bad in ({**ROWS[0], "weight": "heavy"}, {**ROWS[0], "colour": "red"}, {"weight": 1.0}, [ROWS[0], 3]):
        with pytest.raises(InputError) as native_error:
            native.row_feeds(bad)
        with pytest.raises(InputError) as onnx_error:
            onnx.row_feeds(bad)
        assert str(onnx_error.value) == str(native_error.value) and native_error.value.problems
        assert onnx_error.value.problems == native_error.value.problems


def _same(a: EngineOutput, b: EngineOutput) -> None:
    np.testing.assert_array_equal(a.values, b.values)
    if a.probabilities is None:
        assert b.probabilities is None
    else:
        np.testing.assert_array_equal(a.probabilities, b.probabilities)


def _onnx_on_frame(onnx_model: bytes, metadata: BundleMetadata, rows: list[dict[str, Any]]) -> EngineOutput:
    """The export run on the model-ready frame through `onnx_feeds` (training's parity path)."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    classify = metadata.task == "classification"
    output = PROBABILITIES_OUTPUT if classify else PREDICTION_OUTPUT
    (out,) = session.run([output], onnx_feeds(model_frame(metadata, rows), list(metadata.features), session))
    result = np.asarray(out, dtype=np.float64)
    return EngineOutput(result.argmax(axis=1), result) if classify else EngineOutput(result.reshape(-1))


@pytest.mark.parametrize(("name", "rows"), [("iris", IRIS_ROWS), ("shipping", SHIPPING_ROWS)])
def test_onnx_answers_are_unchanged_and_batching_does_not_change_them(
    app: FastAPI, client: TestClient, serve_settings: ServeSettings, name: str, rows: list[dict[str, Any]]
) -> None:
    model = app.state.runtime.registry.get(name)
    engine, validator = model.engine, model.validator
    assert engine.name == "onnx"
    bundle = open_repository(serve_settings).load_bundle(name, "production")
    assert bundle.onnx_model is not None
    reference = _onnx_on_frame(bundle.onnx_model, bundle.metadata, rows)  # the frame path
    _same(engine.predict_columns(validator.row_feeds(rows).columns), reference)
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    _same(engine.predict_columns(validator.column_feeds(columns).columns), reference)
    singles = [validator.row_feeds(row) for row in rows]
    together = engine.predict_columns(merge(singles).columns)
    for i, single in enumerate(singles):
        alone = engine.predict_columns(single.columns)
        _same(
            EngineOutput(
                together.values[i : i + 1],
                None if together.probabilities is None else together.probabilities[i : i + 1],
            ),
            alone,
        )


def test_the_native_engine_takes_the_same_columns(serve_settings: ServeSettings) -> None:
    bundle = open_repository(serve_settings).load_bundle("shipping", "production")
    engine = NativeEngine(bundle)
    validator = InputValidator(bundle.metadata, layout=engine.layout)
    assert bundle.metadata.task == "regression"
    expected = bundle.model.predict(model_frame(bundle.metadata, SHIPPING_ROWS))  # the fitted pipeline
    got = engine.predict_columns(validator.row_feeds(SHIPPING_ROWS).columns)
    assert got.probabilities is None
    np.testing.assert_array_equal(got.values, np.asarray(expected, dtype=np.float64))


def _numeric_metadata() -> BundleMetadata:
    return schema_metadata(
        "sensor",
        "load",
        [
            FeatureSchema(name="temperature", dtype="float"),
            FeatureSchema(name="count", dtype="int"),
            FeatureSchema(name="pressure", dtype="float", required=False),
        ],
    )


NUMERIC_ROWS: list[dict[str, Any]] = [
    {"temperature": 21.5, "count": 3, "pressure": 1013},
    {"temperature": -4, "count": 7.0, "pressure": 0.5},
]


@pytest.mark.parametrize("numeric", ["tensor(double)", "tensor(float)"])
def test_an_all_numeric_schema_takes_the_block_path_with_the_same_feeds(numeric: str) -> None:
    metadata = _numeric_metadata()
    declared = {f.name: numeric for f in metadata.features}
    validator = InputValidator(metadata, layout=FeedLayout.onnx(metadata.features, declared))
    columns = {name: [row[name] for row in NUMERIC_ROWS] for name in declared}
    for payload, rows, fast in (
        (NUMERIC_ROWS, NUMERIC_ROWS, validator.row_feeds(NUMERIC_ROWS)),
        (NUMERIC_ROWS[0], NUMERIC_ROWS[:1], validator.row_feeds(NUMERIC_ROWS[0])),
        (columns, NUMERIC_ROWS, validator.column_feeds(columns)),
    ):
        assert fast.block is not None, payload  # the fast path was taken
        reference = onnx_feeds(model_frame(metadata, rows), list(metadata.features), FakeSession(declared))
        assert fast.rows == len(rows) and list(fast.columns) == list(reference)
        for name, array in reference.items():
            mine = fast.columns[name]
            assert mine.dtype == array.dtype and mine.shape == array.shape and mine.flags["C_CONTIGUOUS"]
            np.testing.assert_array_equal(mine, array)
    # Blocks stack into one block; a mixed batch (a null needs the full path) still merges by column.
    stacked = merge([validator.row_feeds(row) for row in NUMERIC_ROWS])
    assert stacked.block is not None and stacked.rows == 2
    with_null = validator.row_feeds({"temperature": 1.0, "count": 2, "pressure": None})
    assert with_null.block is None
    mixed = merge([validator.row_feeds(NUMERIC_ROWS[0]), with_null])
    np.testing.assert_array_equal(mixed.columns["pressure"][:, 0], [1013, np.nan])


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": 1.0, "count": 2.5},
        {"temperature": True, "count": 2},
        {"temperature": "1.0", "count": 2},
        {"temperature": 1.0},
        {"temperature": 1.0, "count": 2, "colour": 3},
        {"temperature": 1e400, "count": 2},
        {"temperature": 1.0, "count": 10**400},
        [{"temperature": 1.0, "count": 2}, [1.0, 2]],
    ],
)
def test_the_block_path_leaves_every_bad_row_to_the_full_checks(bad: Any) -> None:
    metadata = _numeric_metadata()
    validator, full = InputValidator(metadata), full_check_validator(metadata)
    assert validator.row_feeds(NUMERIC_ROWS).block is not None and full.row_feeds(NUMERIC_ROWS).block is None
    with pytest.raises(InputError) as full_error:
        full.row_feeds(bad)
    with pytest.raises(InputError) as feeds_error:
        validator.row_feeds(bad)
    assert feeds_error.value.problems == full_error.value.problems
    if isinstance(bad, dict):
        columns = {key: [value] for key, value in bad.items()}
        with pytest.raises(InputError) as column_error:
            validator.column_feeds(columns)
        with pytest.raises(InputError) as column_full_error:
            full.column_feeds(columns)
        assert str(column_error.value) == str(column_full_error.value)
