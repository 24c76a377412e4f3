"""The Open Inference Protocol (KServe V2) routes, driven the way KServe's docs and tritonclient send."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from layerops import __version__
from layerops.delivery.http_errors import Transport, domain_error_response
from layerops.errors import InputError, ModelNotReadyError, NotFoundError
from tests.delivery.conftest import IRIS_ROW, IRIS_ROWS, SHIPPING_ROW, SHIPPING_ROWS

NUMPY = {"FP32": "<f4", "FP64": "<f8", "INT64": "<i8"}


def feature_tensors(rows: list[dict[str, Any]], *, column: bool = False, numeric: str = "FP64") -> list[Any]:
    """One tensor per feature, shape [N] (or [N, 1]), strings as BYTES."""
    tensors = []
    for name in rows[0]:
        values = [row[name] for row in rows]
        datatype = "BYTES" if isinstance(values[0], str) else numeric
        shape = [len(rows), 1] if column else [len(rows)]
        tensors.append({"name": name, "shape": shape, "datatype": datatype, "data": values})
    return tensors


def infer(client: TestClient, model: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """POST an inference request; return the body of a 200."""
    response = client.post(f"/v2/models/{model}/infer", json=body, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    result: dict[str, Any] = response.json()
    return result


def outputs(body: dict[str, Any]) -> dict[str, Any]:
    """Response outputs by name."""
    return {o["name"]: o for o in body["outputs"]}


def native(client: TestClient, model: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The native route's answer for the same rows."""
    response = client.post(f"/models/{model}/predict", json=rows)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def error(client: TestClient, model: str, body: Any, status: int = 400) -> str:
    """POST a bad request; check the status and the protocol's error shape; return the message."""
    response = client.post(f"/v2/models/{model}/infer", json=body)
    assert response.status_code == status, response.text
    payload = response.json()
    assert set(payload) == {"error"} and isinstance(payload["error"], str)
    message: str = payload["error"]
    return message


def test_health_and_server_metadata(client: TestClient) -> None:
    live, ready = client.get("/v2/health/live"), client.get("/v2/health/ready")
    assert (live.status_code, live.json()) == (200, {"live": True})
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    assert client.get("/v2").json() == {
        "name": "layerops",
        "version": __version__,
        "extensions": ["binary_tensor_data"],
    }


def test_model_metadata(client: TestClient) -> None:
    iris = client.get("/v2/models/iris")
    assert iris.status_code == 200 and iris.headers["X-Model-Version"] == "1"
    assert iris.json() == {
        "name": "iris",
        "versions": ["1"],
        "platform": "onnx_onnxv1",
        "inputs": [{"name": name, "datatype": "FP64", "shape": [-1]} for name in IRIS_ROW],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
        ],
    }
    assert client.get("/v2/models/iris/versions/1").json() == iris.json()
    shipping = client.get("/v2/models/shipping").json()
    datatypes = {t["name"]: t["datatype"] for t in shipping["inputs"]}
    assert datatypes["origin"] == "BYTES" and datatypes["length"] == "FP64"
    assert shipping["outputs"] == [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]


def test_model_ready_and_unknown_models(client: TestClient) -> None:
    for path in ("/v2/models/iris/ready", "/v2/models/iris/versions/1/ready"):
        response = client.get(path)
        assert (response.status_code, response.json()) == (200, {"name": "iris", "ready": True})
    for path in (
        "/v2/models/nope",
        "/v2/models/nope/ready",
        "/v2/models/iris/versions/99",
        "/v2/models/iris/versions/99/ready",
        "/v2/models/iris/versions/latest/ready",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert set(response.json()) == {"error"}
    assert "nope" in error(client, "nope", {"inputs": feature_tensors(IRIS_ROWS)}, 404)
    missing = client.post("/v2/models/iris/versions/99/infer", json={"inputs": feature_tensors(IRIS_ROWS)})
    assert missing.status_code == 404 and "99" in missing.json()["error"]


def test_infer_per_feature_tensors_matches_the_native_route(client: TestClient) -> None:
    expected = native(client, "iris", IRIS_ROWS)
    probabilities = [
        [row[c] for c in ("setosa", "versicolor", "virginica")] for row in expected["probabilities"]
    ]
    for column in (False, True):
        for numeric in ("FP64", "FP32"):
            body = infer(
                client, "iris", {"inputs": feature_tensors(IRIS_ROWS, column=column, numeric=numeric)}
            )
            assert body["model_name"] == "iris" and body["model_version"] == "1" and "id" not in body
            out = outputs(body)
            assert out["label"] == {
                "name": "label",
                "datatype": "BYTES",
                "shape": [3],
                "data": expected["predictions"],
            }
            assert out["probabilities"]["shape"] == [3, 3] and out["probabilities"]["datatype"] == "FP64"
            np.testing.assert_allclose(
                np.reshape(out["probabilities"]["data"], (3, 3)), probabilities, atol=1e-6
            )


def test_infer_one_matrix_tensor_flat_or_nested(client: TestClient) -> None:
    expected = native(client, "iris", IRIS_ROWS)["predictions"]
    matrix = [list(row.values()) for row in IRIS_ROWS]
    flat = [value for row in matrix for value in row]
    for data in (flat, matrix):
        body = infer(
            client,
            "iris",
            {"inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP32", "data": data}]},
        )
        assert outputs(body)["label"]["data"] == expected
    nested_columns = feature_tensors(IRIS_ROWS, column=True)
    for tensor in nested_columns:
        tensor["data"] = [[value] for value in tensor["data"]]
    assert outputs(infer(client, "iris", {"inputs": nested_columns}))["label"]["data"] == expected


def test_infer_bytes_categoricals_for_a_regressor(client: TestClient) -> None:
    expected = native(client, "shipping", SHIPPING_ROWS)["predictions"]
    response = client.post(
        "/v2/models/shipping/infer", json={"id": "42", "inputs": feature_tensors(SHIPPING_ROWS)}
    )
    body = response.json()
    assert response.headers["X-Model-Name"] == "shipping" and response.headers["X-Model-Version"] == "1"
    assert body["id"] == "42" and [o["name"] for o in body["outputs"]] == ["prediction"]
    prediction = body["outputs"][0]
    assert prediction["datatype"] == "FP64" and prediction["shape"] == [2]
    np.testing.assert_allclose(prediction["data"], expected, rtol=1e-9)


def test_requested_outputs_and_the_documented_request(client: TestClient) -> None:
    # Exactly what KServe's docs show: raw JSON bytes, Content-Type: application/json, an id, outputs.
    request = {"id": "42", "inputs": feature_tensors(IRIS_ROWS[:1]), "outputs": [{"name": "probabilities"}]}
    response = client.post(
        "/v2/models/iris/versions/1/infer",
        content=orjson.dumps(request),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200 and response.json()["id"] == "42"
    assert [o["name"] for o in response.json()["outputs"]] == ["probabilities"]
    both = infer(client, "iris", {**request, "outputs": [{"name": "label"}, {"name": "probabilities"}]})
    assert [o["name"] for o in both["outputs"]] == ["label", "probabilities"]
    message = error(client, "iris", {**request, "outputs": [{"name": "prediction"}]})
    assert "unknown output 'prediction'" in message and "label, probabilities" in message


def binary_request(tensors: list[tuple[str, str, Any]]) -> tuple[bytes, dict[str, str]]:
    """A body as tritonclient sends it by default: JSON header, then each tensor's raw bytes."""
    inputs, blobs = [], []
    for name, datatype, values in tensors:
        array = np.asarray(values)
        if datatype == "BYTES":
            raw = b"".join(len(v.encode()).to_bytes(4, "little") + v.encode() for v in array.reshape(-1))
        else:
            raw = array.astype(NUMPY[datatype]).tobytes()
        shape = list(array.shape)
        inputs.append(
            {"name": name, "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": len(raw)}}
        )
        blobs.append(raw)
    header = orjson.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}})
    headers = {
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Type": "application/octet-stream",
    }
    return header + b"".join(blobs), headers


def test_binary_tensor_data_extension_inputs(client: TestClient) -> None:
    matrix = [[row[name] for name in IRIS_ROW] for row in IRIS_ROWS]
    body, headers = binary_request([("input__0", "FP32", matrix)])
    response = client.post("/v2/models/iris/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert outputs(response.json())["label"]["data"] == native(client, "iris", IRIS_ROWS)["predictions"]

    columns = [
        (name, "BYTES" if isinstance(value, str) else "FP64", [[row[name]] for row in SHIPPING_ROWS])
        for name, value in SHIPPING_ROW.items()
    ]
    body, headers = binary_request(columns)
    response = client.post("/v2/models/shipping/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    expected = native(client, "shipping", SHIPPING_ROWS)["predictions"]
    np.testing.assert_allclose(response.json()["outputs"][0]["data"], expected, rtol=1e-9)

    truncated = client.post("/v2/models/iris/infer", content=body[:-3], headers=headers)
    assert truncated.status_code == 400 and "binary" in truncated.json()["error"]


def test_shape_and_data_must_agree(client: TestClient) -> None:
    tensors = feature_tensors(IRIS_ROWS)
    tensors[0]["shape"] = [4]
    assert "shape [4] holds 4 elements but data has 3" in error(client, "iris", {"inputs": tensors})
    matrix = [list(row.values()) for row in IRIS_ROWS]
    for shape, data in (([3, 4], matrix[:2]), ([3, 4], [row[:3] for row in matrix]), ([2, 6], matrix)):
        tensor = {"name": "x", "shape": shape, "datatype": "FP64", "data": data}
        assert "input 'x'" in error(client, "iris", {"inputs": [tensor]})
    tensor = {
        "name": "x",
        "shape": [3, 3],
        "datatype": "FP64",
        "data": [v for row in matrix for v in row[:3]],
    }
    assert "shape [N, 4]" in error(client, "iris", {"inputs": [tensor]})
    uneven = feature_tensors(IRIS_ROWS)
    uneven[1] = feature_tensors(IRIS_ROWS[:2])[1]
    assert "different" in error(client, "iris", {"inputs": uneven})
    cube = {"name": "x", "shape": [3, 4, 1], "datatype": "FP64", "data": [v for row in matrix for v in row]}
    assert "dimensions" in error(client, "iris", {"inputs": [cube]})


def test_schema_errors_are_400_with_the_reason(client: TestClient) -> None:
    tensors = feature_tensors(SHIPPING_ROWS)
    tensors[4]["data"] = ["north", "atlantis"]
    message = error(client, "shipping", {"inputs": tensors})
    assert "origin" in message and "atlantis" in message and "central, east, north, south, west" in message

    missing = [t for t in feature_tensors(IRIS_ROWS) if t["name"] != "petal_width"]
    assert "missing input tensor 'petal_width'" in error(client, "iris", {"inputs": missing})
    unknown = [
        *feature_tensors(IRIS_ROWS),
        {"name": "colour", "shape": [3], "datatype": "BYTES", "data": ["a"] * 3},
    ]
    assert "unknown input 'colour'" in error(client, "iris", {"inputs": unknown})
    matrix = {"name": "x", "shape": [2, 7], "datatype": "FP64", "data": [0.0] * 14}
    assert "categorical features" in error(client, "shipping", {"inputs": [matrix]})


def test_wrong_datatypes_are_400(client: TestClient) -> None:
    cases: list[tuple[str, str, Any, str]] = [
        ("sepal_length", "BYTES", ["5.1", "6.0", "7.7"], "does not fit a float feature"),
        ("sepal_length", "FLOAT", [5.1, 6.0, 7.7], "unknown datatype 'FLOAT'"),
        ("sepal_length", "FP32", [5.1, "6.0", 7.7], "element 1 ('6.0') is not a FP32 value"),
        ("sepal_length", "INT32", [5, 6.5, 7], "element 1 (6.5) is not a INT32 value"),
        ("sepal_length", "BOOL", [True, False, True], "does not fit a float feature"),
        ("sepal_length", "UINT8", [5, 6, 300], "element 2 (300) is not a UINT8 value"),
    ]
    for name, datatype, data, expected in cases:
        tensors = feature_tensors(IRIS_ROWS)
        tensors[0] = {"name": name, "shape": [3], "datatype": datatype, "data": data}
        assert expected in error(client, "iris", {"inputs": tensors}), (datatype, data)
    shipping = feature_tensors(SHIPPING_ROWS)
    shipping[4]["datatype"] = "FP32"
    assert "origin" in error(client, "shipping", {"inputs": shipping})
    ints = feature_tensors(IRIS_ROWS)
    ints[0] = {"name": "sepal_length", "shape": [3], "datatype": "INT64", "data": [5, 6, 7]}
    assert client.post("/v2/models/iris/infer", json={"inputs": ints}).status_code == 200


def test_malformed_requests_are_400(client: TestClient) -> None:
    response = client.post(
        "/v2/models/iris/infer", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and "malformed JSON" in response.json()["error"]
    assert "'inputs'" in error(client, "iris", {"inputs": []})
    assert "'inputs'" in error(client, "iris", {"id": "1"})
    assert "inference request object" in error(client, "iris", [1, 2])
    assert "'id'" in error(client, "iris", {"id": 42, "inputs": feature_tensors(IRIS_ROWS)})
    no_data = [{k: v for k, v in t.items() if k != "data"} for t in feature_tensors(IRIS_ROWS)]
    assert "'data' is required" in error(client, "iris", {"inputs": no_data})


def test_error_statuses() -> None:
    assert domain_error_response(InputError("bad"), Transport.V2).status_code == 400
    assert domain_error_response(NotFoundError("gone"), Transport.V2).status_code == 404
    not_ready = domain_error_response(ModelNotReadyError("loading"), Transport.V2)
    assert not_ready.status_code == 503 and not_ready.headers["Retry-After"] == "1"
    assert orjson.loads(not_ready.body) == {"error": "loading"}


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready"])
def test_health_is_public(client: TestClient, path: str) -> None:
    assert client.get(path, headers={"Authorization": ""}).status_code == 200
