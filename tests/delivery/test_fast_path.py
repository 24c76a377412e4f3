"""The fast path: cheap engines score on the event loop, and start-up freezes the loaded heap."""

from __future__ import annotations

import gc

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from layerops.delivery.engines import build_engine, reference_feeds
from layerops.delivery.models import ModelLoader, timing_feeds
from layerops.delivery.settings import ServeSettings
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
