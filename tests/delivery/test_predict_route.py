"""`POST /models/{name}/predict`: one raw ASGI route, answering every case as the other routes do."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from layerops.delivery.app import create_app
from layerops.delivery.runtime import build_runtime
from layerops.delivery.settings import ServeSettings
from layerops.repository.factory import open_repository
from tests.delivery.conftest import IRIS_ROW, IRIS_ROWS, SHIPPING_ROW, USER

CASES: list[tuple[str, str, dict[str, Any], int]] = [
    ("one iris row", "/models/iris/predict", {"json": IRIS_ROW}, 200),
    ("an iris batch", "/models/iris/predict", {"json": IRIS_ROWS}, 200),
    ("a shipping row (categories)", "/models/shipping/predict", {"json": SHIPPING_ROW}, 200),
    ("an invalid value", "/models/iris/predict", {"json": {**IRIS_ROW, "sepal_length": "long"}}, 422),
    ("a missing field", "/models/iris/predict", {"json": {"sepal_length": 5.0}}, 422),
    ("malformed JSON", "/models/iris/predict", {"content": b"{not json"}, 400),
    ("an empty body", "/models/iris/predict", {"content": b""}, 400),
    ("an unknown model", "/models/nope/predict", {"json": IRIS_ROW}, 404),
    ("too large a body", "/models/iris/predict", {"json": [IRIS_ROW] * 400}, 413),
    ("no API key", "/models/iris/predict", {"json": IRIS_ROW, "headers": {"Authorization": ""}}, 401),
]


def _answer(client: TestClient, path: str, request: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
    response = client.post(path, **request)
    kept = {"content-type", "x-model-name", "x-model-version", "retry-after", "www-authenticate"}
    return response.status_code, response.json(), {k: v for k, v in response.headers.items() if k in kept}


def test_every_case_answers_as_the_versioned_route_does(serve_settings: ServeSettings) -> None:
    settings = serve_settings.model_copy(update={"max_body_bytes": 20_000})
    with TestClient(create_app(build_runtime(settings, open_repository(settings))), headers=USER) as client:
        for label, path, request, status in CASES:
            ours = _answer(client, path, request)
            assert ours[0] == status, (label, ours)
            if status != 404:  # the same body through the framework route of version 1
                versioned = _answer(client, path.replace("/predict", "/versions/1/predict"), request)
                assert ours == versioned, label
        metrics = client.get("/metrics").text
    # Logs and metrics label the route's requests with its path template.
    assert 'route="/models/{name}/predict",status="200"' in metrics
    assert 'route="/models/{name}/predict",status="422"' in metrics


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/models/iris/predict", 405),
        ("PUT", "/models/iris/predict", 405),
        ("POST", "/models/iris/predict/extra", 404),
        ("POST", "/models//predict", 404),
    ],
)
def test_other_methods_and_paths_are_the_routers(
    client: TestClient, method: str, path: str, status: int
) -> None:
    response = client.request(method, path, json=IRIS_ROW)
    assert response.status_code == status and set(response.json()) == {"error"}


def test_one_documented_operation_per_served_model(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/models/{name}/predict" not in paths
    assert {"/models/iris/predict", "/models/shipping/predict"} <= set(paths)
    operation = paths["/models/iris/predict"]["post"]
    assert operation["operationId"] == "predict_iris" and {"401", "413", "422", "500"} <= set(
        operation["responses"]
    )
