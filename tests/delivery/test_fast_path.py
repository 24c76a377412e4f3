"""The fast path: cheap engines score on the event loop, and start-up freezes the loaded heap."""

from __future__ import annotations

import dataclasses
import gc
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from layerops.bundle import ModelBundle
from layerops.bundle.metadata import OnnxInfo
from layerops.delivery.engines import OnnxEngine, build_engine, reference_feeds
from layerops.delivery.models import ModelLoader, timing_feeds
from layerops.delivery.settings import ServeSettings
from layerops.errors import BundleError
from layerops.repository.factory import open_repository
from tests.delivery.conftest import IRIS_ROW, USER


def test_a_cheap_onnx_model_runs_inline_up_to_its_batch_size_and_a_zero_budget_turns_it_off(
    serve_settings: ServeSettings,
) -> None:
    repository = open_repository(serve_settings)
    loaded = ModelLoader(repository, serve_settings).load("iris", "production")
    assert loaded.engine.name == "onnx"
    assert 1 <= loaded.inline_rows <= serve_settings.max_batch_size

    small = serve_settings.model_copy(update={"max_batch_size": 4})
    assert ModelLoader(repository, small).load("iris", "production").inline_rows == 4

    off = serve_settings.model_copy(update={"inline_budget_ms": 0.0})
    assert ModelLoader(repository, off).load("iris", "production").inline_rows == 0

    # A budget far below one call's cost leaves nothing inline.
    tiny = serve_settings.model_copy(update={"inline_budget_ms": 1e-6})
    assert ModelLoader(repository, tiny).load("iris", "production").inline_rows == 0


def test_start_up_collects_once_then_freezes_what_the_models_hold(app: FastAPI) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    with TestClient(app, headers=USER) as client:
        assert gc.get_freeze_count() > 10_000  # libraries and loaded models, out of the collector's way
        response = client.post("/models/iris/predict", json=IRIS_ROW)
        assert response.status_code == 200, response.text
    gc.unfreeze()


@pytest.mark.parametrize("name", ["iris", "shipping"])
def test_engines_are_timed_on_distinct_valid_rows_not_the_reference_rows_repeated(
    serve_settings: ServeSettings, name: str
) -> None:
    repository = open_repository(serve_settings)
    bundle = repository.load_bundle(name, "production")
    engine, _ = build_engine(bundle, "auto")
    feeds = timing_feeds(bundle, engine, 64)
    assert feeds.rows == 64
    rows = {
        tuple(map(str, values)) for values in zip(*(c[:, 0] for c in feeds.columns.values()), strict=True)
    }
    assert len(rows) == 64  # every row differs: a tree ensemble cannot answer from cache
    assert len(engine.predict_columns(feeds.columns).values) == 64
    assert feeds.columns.keys() == reference_feeds(bundle, engine).columns.keys()


class RecordingRepository:
    """The real repository, recording how bundles were asked for."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.loads: list[bool] = []

    def load_bundle(self, name: str, ref: int | str, *, native: bool = True) -> Any:
        self.loads.append(native)
        return self.inner.load_bundle(name, ref, native=native)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.inner, attribute)


@pytest.mark.parametrize(("engine", "loads"), [("auto", [False]), ("onnx", [False]), ("native", [True])])
def test_the_native_model_is_deserialised_only_for_the_native_engine(
    serve_settings: ServeSettings, engine: str, loads: list[bool]
) -> None:
    repository = RecordingRepository(open_repository(serve_settings))
    settings = serve_settings.model_copy(update={"engine": engine})
    served = ModelLoader(repository, settings).load("iris", "production")
    assert repository.loads == loads
    assert served.engine.name == ("native" if engine == "native" else "onnx")


def test_a_fallback_to_native_fetches_the_native_model_then(serve_settings: ServeSettings) -> None:
    repository = open_repository(serve_settings)
    lean = repository.load_bundle("iris", "production", native=False)
    assert lean.model is None and lean.onnx_model is not None
    rejected = dataclasses.replace(
        lean,
        metadata=lean.metadata.model_copy(
            update={"onnx": OnnxInfo(converted=False, reason="parity 3e-2 > 1e-5")}
        ),
    )
    fetched: list[bool] = []

    def native() -> ModelBundle:
        fetched.append(True)
        return repository.load_bundle("iris", "production")

    engine, note = build_engine(rejected, "auto", native=native)
    assert engine.name == "native" and fetched == [True]
    assert note is not None and "parity 3e-2" in note
    with pytest.raises(BundleError, match="loaded without its native model"):
        build_engine(rejected, "auto")
    with pytest.raises(BundleError, match="engine 'onnx' requested"):
        build_engine(rejected, "onnx", native=native)
    assert fetched == [True]


def test_onnx_sessions_take_one_thread_unless_configured(serve_settings: ServeSettings) -> None:
    repository = open_repository(serve_settings)
    default = ModelLoader(repository, serve_settings).load("iris", "production").engine
    assert isinstance(default, OnnxEngine) and default.threads == 1
    two = serve_settings.model_copy(update={"onnx_threads": 2})
    engine = ModelLoader(repository, two).load("iris", "production").engine
    assert isinstance(engine, OnnxEngine) and engine.threads == 2
