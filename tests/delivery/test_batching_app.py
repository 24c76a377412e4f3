"""Micro-batching through the real app: every transport shares batches, 503 on a full queue, reloads."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from layerops.delivery.app import create_app
from layerops.delivery.engines import Engine, EngineOutput
from layerops.delivery.feeds import Columns
from layerops.delivery.models import ServedModel
from layerops.delivery.runtime import build_runtime
from layerops.delivery.settings import ServeSettings
from layerops.repository.factory import open_repository
from tests.delivery.conftest import IRIS_ROW, IRIS_ROWS, USER, USER_KEY


class GatedEngine:
    """A real engine wrapped with a gate each batch waits at; records batch sizes; can be made to fail."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.name = inner.name
        self.layout = inner.layout
        self.gate = threading.Event()
        self.gate.set()
        self.batches: list[int] = []
        self.fail = False

    def predict_columns(self, columns: Columns) -> EngineOutput:
        self.gate.wait(10)
        self.batches.append(len(next(iter(columns.values()))))
        if self.fail:
            raise RuntimeError("the gated engine broke")
        return self.inner.predict_columns(columns)


def gate(app: FastAPI, name: str) -> tuple[ServedModel, GatedEngine]:
    """Serve `name` through a `GatedEngine` around its real engine (same version)."""
    model = app.state.runtime.registry.get(name)
    engine = GatedEngine(model.engine)
    gated = dataclasses.replace(model, engine=engine, inline_rows=0)  # it blocks: never on the loop
    app.state.runtime.registry.swap(gated)
    return gated, engine


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        assert time.perf_counter() < deadline, "condition not reached"
        time.sleep(0.002)


def iris_rows(n: int) -> list[dict[str, float]]:
    return [
        {
            "sepal_length": 4.6 + 0.25 * i,
            "sepal_width": 3.4 - 0.08 * i,
            "petal_length": 1.2 + 0.45 * i,
            "petal_width": 0.2 + 0.17 * i,
        }
        for i in range(n)
    ]


def answer(client: TestClient, transport: str, row: dict[str, float]) -> Any:
    """One row predicted through a transport; the whole response body."""
    if transport == "native":
        response = client.post("/models/iris/predict", json=row)
    elif transport == "v2":
        inputs = [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in row.items()]
        response = client.post("/v2/models/iris/infer", json={"inputs": inputs})
    else:
        response = client.post("/invocations?model=iris", json={"dataframe_records": [row]})
    assert response.status_code == 200, response.text
    return response.json()


def test_concurrent_predictions_through_the_app_equal_sequential_ones(
    app: FastAPI, client: TestClient
) -> None:
    calls = [(transport, row) for row in iris_rows(8) for transport in ("native", "v2", "mlflow")]
    sequential = [answer(client, transport, row) for transport, row in calls]
    model, engine = gate(app, "iris")
    batcher = app.state.runtime.service.batcher(model)
    engine.gate.clear()
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        first = pool.submit(answer, client, *calls[0])
        wait_for(lambda: batcher.running == 1)
        rest = [pool.submit(answer, client, *call) for call in calls[1:]]
        wait_for(lambda: batcher.queued_rows == len(calls) - 1)
        engine.gate.set()
        concurrent = [future.result() for future in [first, *rest]]
    assert engine.batches == [1, len(calls) - 1]  # every transport's requests shared one engine call
    assert concurrent == sequential
    metrics = client.get("/metrics").text
    assert 'layerops_batch_size_count{model="iris",version="1"}' in metrics
    assert 'layerops_batch_queue_wait_seconds_count{model="iris",version="1"}' in metrics


def test_a_full_queue_answers_503_with_retry_after(served_home: Path) -> None:
    settings = ServeSettings(
        home=served_home,
        api_keys=[USER_KEY],
        reload_interval_seconds=0,
        max_queue_rows=1,
        models=["iris"],
    )
    with TestClient(create_app(build_runtime(settings, open_repository(settings))), headers=USER) as client:
        model, engine = gate(client.app, "iris")  # type: ignore[arg-type]
        batcher = client.app.state.runtime.service.batcher(model)  # type: ignore[attr-defined]
        engine.gate.clear()
        with ThreadPoolExecutor(max_workers=2) as pool:
            running = pool.submit(client.post, "/models/iris/predict", json=IRIS_ROW)
            wait_for(lambda: batcher.running == 1)
            queued = pool.submit(client.post, "/models/iris/predict", json=IRIS_ROW)
            wait_for(lambda: batcher.queued_rows == 1)
            refused = client.post("/models/iris/predict", json=IRIS_ROW)
            refused_v2 = client.post("/v2/models/iris/infer", json={"inputs": [
                {"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in IRIS_ROW.items()
            ]})  # fmt: skip
            engine.gate.set()
            assert running.result().status_code == 200 and queued.result().status_code == 200
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["type"] == "overloaded"
    assert refused_v2.status_code == 503 and refused_v2.headers["Retry-After"] == "1"


def test_an_engine_failure_is_a_500_for_the_request(app: FastAPI, client: TestClient) -> None:
    _, engine = gate(app, "iris")
    engine.fail = True
    response = client.post("/models/iris/predict", json=IRIS_ROW)
    assert response.status_code == 500 and response.json()["error"]["type"] == "engine_error"
    assert "model 'iris' v1 failed to predict a batch of 1 rows" in response.json()["error"]["message"]
    engine.fail = False
    assert client.post("/models/iris/predict", json=IRIS_ROW).status_code == 200


def test_a_new_version_gets_a_new_batcher_while_the_old_queue_finishes_on_the_old_one(
    app: FastAPI, client: TestClient
) -> None:
    service, registry = app.state.runtime.service, app.state.runtime.registry
    old, engine = gate(app, "iris")
    old_batcher = service.batcher(old)
    engine.gate.clear()
    with ThreadPoolExecutor(max_workers=2) as pool:
        running = pool.submit(client.post, "/models/iris/predict", json=IRIS_ROWS[0])
        wait_for(lambda: old_batcher.running == 1)
        queued = pool.submit(client.post, "/models/iris/predict", json=IRIS_ROWS[1])
        wait_for(lambda: old_batcher.queued_rows == 1)
        new = dataclasses.replace(old, version=7, engine=engine.inner)
        registry.swap(new)
        service.retire(old)  # what the reloader's swap hook does
        fresh = client.post("/models/iris/predict", json=IRIS_ROWS[2])  # not stuck behind v1's queue
        assert fresh.status_code == 200 and fresh.json()["version"] == 7
        engine.gate.set()
        assert [running.result().json()["version"], queued.result().json()["version"]] == [1, 1]
    assert engine.batches == [1, 1] and service.batcher(new) is not old_batcher
