"""The predict fast lane answers its one path exactly as the framework route would, and nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

from layerops.delivery.app import create_app
from layerops.delivery.fast_lane import PredictFastLane
from layerops.delivery.runtime import build_runtime
from layerops.delivery.settings import ServeSettings
from layerops.repository.factory import open_repository
from tests.delivery.conftest import IRIS_ROW, IRIS_ROWS, SHIPPING_ROW, USER

CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("one iris row", "/models/iris/predict", {"json": IRIS_ROW}),
    ("an iris batch", "/models/iris/predict", {"json": IRIS_ROWS}),
    ("a shipping row (categories)", "/models/shipping/predict", {"json": SHIPPING_ROW}),
    ("an invalid value", "/models/iris/predict", {"json": {**IRIS_ROW, "sepal_length": "long"}}),
    ("a missing field", "/models/iris/predict", {"json": {"sepal_length": 5.0}}),
    ("malformed JSON", "/models/iris/predict", {"content": b"{not json"}),
    ("an empty body", "/models/iris/predict", {"content": b""}),
    ("an unknown model", "/models/nope/predict", {"json": IRIS_ROW}),
    ("too large a body", "/models/iris/predict", {"json": [IRIS_ROW] * 400}),
    ("no API key", "/models/iris/predict", {"json": IRIS_ROW, "headers": {"Authorization": ""}}),
]


def _without_lane(settings: ServeSettings) -> FastAPI:
    app = create_app(build_runtime(settings, open_repository(settings)))
    app.user_middleware = [m for m in app.user_middleware if m.cls is not PredictFastLane]
    return app


def _answer(client: TestClient, path: str, request: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
    response = client.post(path, **request)
    kept = {"content-type", "x-model-name", "x-model-version", "retry-after", "www-authenticate"}
    headers = {k: v for k, v in response.headers.items() if k in kept}
    return response.status_code, response.json(), headers


def test_the_lane_answers_every_case_exactly_as_the_framework_route(serve_settings: ServeSettings) -> None:
    settings = serve_settings.model_copy(update={"max_body_bytes": 20_000})
    lane_app = create_app(build_runtime(settings, open_repository(settings)))
    assert any(m.cls is PredictFastLane for m in lane_app.user_middleware)
    with (
        TestClient(lane_app, headers=USER) as with_lane,
        TestClient(_without_lane(settings), headers=USER) as framework,
    ):
        statuses = set()
        for label, path, request in CASES:
            ours = _answer(with_lane, path, request)
            assert ours == _answer(framework, path, request), label
            statuses.add(ours[0])
        assert statuses == {200, 400, 401, 404, 413, 422}
        metrics = with_lane.get("/metrics").text
    # Logs and metrics label lane requests with the route template, as the router would.
    assert 'route="/models/{name}/predict",status="200"' in metrics
    assert 'route="/models/{name}/predict",status="422"' in metrics


class Recorder:
    """The app behind the lane: records what reached it and answers 299."""

    def __init__(self) -> None:
        self.paths: list[tuple[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.paths.append((scope["method"], scope["path"]))
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


@pytest.mark.parametrize(
    ("method", "path", "lane"),
    [
        ("POST", "/models/iris/predict", True),
        ("POST", "/models/nope/predict", True),
        ("GET", "/models/iris/predict", False),
        ("POST", "/models/iris/versions/1/predict", False),
        ("POST", "/models/iris/predict/extra", False),
        ("POST", "/models//predict", False),
        ("POST", "/v2/models/iris/infer", False),
        ("POST", "/invocations", False),
    ],
)
def test_only_post_to_the_predict_path_takes_the_lane(
    client: TestClient, app: FastAPI, method: str, path: str, lane: bool
) -> None:
    inner = Recorder()
    lane_app = PredictFastLane(inner, service=app.state.runtime.service, route=None)
    response = TestClient(lane_app).request(method, path, json=IRIS_ROW)  # no lifespan: plain ASGI
    assert (inner.paths == []) is lane
    assert (response.status_code != 299) is lane
    if path == "/models/iris/predict" and method == "POST":
        assert response.status_code == 200 and response.json()["model"] == "iris"
    if path == "/models/nope/predict":
        assert response.status_code == 404 and response.json()["error"]["type"] == "not_found"
