"""The native routes through the ASGI app: models, metadata, predict, and every bad-input case."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from layerops.repository.factory import open_repository
from layerops.training.transform import prepare_features
from tests.delivery.conftest import IRIS_ROW, SHIPPING_ROW


def test_list_models(client: TestClient) -> None:
    body = client.get("/models").json()
    by_name = {m["name"]: m for m in body["models"]}
    assert set(by_name) == {"iris", "shipping"}
    assert by_name["iris"] == {
        "name": "iris",
        "version": 1,
        "alias": "production",
        "aliases": ["production"],
        "task": "classification",
        "engine": "onnx",
    }
    assert by_name["shipping"]["task"] == "regression"


def test_model_metadata(client: TestClient) -> None:
    body = client.get("/models/shipping").json()
    inputs = {f["name"]: f for f in body["inputs"]}
    assert inputs["service_level"]["categories"] == ["economy", "express", "standard"]
    assert inputs["length"]["dtype"] == "float" and inputs["length"]["required"] is True
    assert body["metrics"]["test"]["rmse"] > 0 and body["lineage"]["dataset_sha256"]
    assert body["onnx"]["converted"] is True


def test_predict_one_row_classification(client: TestClient) -> None:
    response = client.post("/models/iris/predict", json=IRIS_ROW)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "iris" and body["version"] == 1
    assert body["predictions"] == ["setosa"]
    assert set(body["probabilities"][0]) == {"setosa", "versicolor", "virginica"}
    assert sum(body["probabilities"][0].values()) == pytest.approx(1.0)
    assert response.headers["X-Model-Version"] == "1" and response.headers["X-Model-Name"] == "iris"


def test_predict_batch_matches_the_native_model(client: TestClient, serve_settings: object) -> None:
    rows = [SHIPPING_ROW, {**SHIPPING_ROW, "weight": 20.0, "service_level": "economy"}]
    body = client.post("/models/shipping/predict", json=rows).json()
    assert len(body["predictions"]) == 2 and "probabilities" not in body
    bundle = open_repository(serve_settings).load_bundle("shipping", "production")  # type: ignore[arg-type]
    import pandas as pd

    expected = bundle.model.predict(prepare_features(pd.DataFrame(rows)))
    np.testing.assert_allclose(body["predictions"], expected, atol=1e-4)


def test_explicit_version_route(client: TestClient) -> None:
    assert client.post("/models/iris/versions/1/predict", json=IRIS_ROW).json()["version"] == 1
    missing = client.post("/models/iris/versions/99/predict", json=IRIS_ROW)
    assert missing.status_code == 404 and "99" in missing.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "payload", "status", "kind", "fragment"),
    [
        ("/models/iris/predict", {**IRIS_ROW, "sepal_length": "long"}, 422, "invalid_input", "sepal_length"),
        (
            "/models/iris/predict",
            {k: v for k, v in IRIS_ROW.items() if k != "petal_width"},
            422,
            "invalid_input",
            "petal_width: field required",
        ),
        (
            "/models/shipping/predict",
            {**SHIPPING_ROW, "service_level": "teleport"},
            422,
            "invalid_input",
            "allowed: economy, express, standard",
        ),
        (
            "/models/iris/predict",
            {**IRIS_ROW, "colour": "blue"},
            422,
            "invalid_input",
            "colour: unknown field",
        ),
        ("/models/iris/predict", [IRIS_ROW] * 10_001, 422, "invalid_input", "exceeds the limit of 10000"),
        ("/models/iris/predict", [], 422, "invalid_input", "non-empty list"),
        ("/models/nosuch/predict", IRIS_ROW, 404, "not_found", "model 'nosuch' is not served"),
        ("/models/nosuch", None, 404, "not_found", "nosuch"),
    ],
)
def test_bad_input_is_a_clear_4xx(
    client: TestClient, path: str, payload: object, status: int, kind: str, fragment: str
) -> None:
    response = client.get(path) if payload is None else client.post(path, json=payload)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == kind and fragment in error["message"]


def test_nan_infinity_and_malformed_json(client: TestClient) -> None:
    headers = {"Content-Type": "application/json"}
    for raw in ['{"sepal_length": NaN}', '{"sepal_length": Infinity}', '{"sepal_length": 5.1', "", "[1,"]:
        response = client.post("/models/iris/predict", content=raw, headers=headers)
        assert response.status_code == 400, raw
        assert response.json()["error"]["type"] == "malformed_body"
    huge = client.post("/models/iris/predict", content='{"sepal_length": 1e999}', headers=headers)
    assert huge.status_code in (400, 422) and huge.json()["error"]["type"] in (
        "malformed_body",
        "invalid_input",
    )


def test_openapi_documents_each_models_schema(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/models/shipping/predict"]["post"]["requestBody"]["content"]["application/json"]
    row = body["schema"]["oneOf"][0]
    assert row["properties"]["service_level"]["enum"] == ["economy", "express", "standard"]
    assert "origin" in row["required"]


def test_health_and_metrics(client: TestClient) -> None:
    assert client.get("/health/live").status_code == 200
    ready = client.get("/health/ready").json()
    assert ready["status"] == "ready" and set(ready["models"]) == {"iris", "shipping"}
    client.post("/models/iris/predict", json=IRIS_ROW)
    text = client.get("/metrics").text
    assert 'layerops_predictions_total{class="setosa",model="iris",version="1"}' in text
    assert "layerops_model_load_seconds" in text
