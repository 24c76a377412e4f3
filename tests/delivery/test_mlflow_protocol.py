"""MLflow's scoring protocol (`/invocations`, `/ping`, `/version`) as `mlflow models serve` answers it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from layerops import __version__
from layerops.delivery.app import create_app
from layerops.delivery.runtime import build_runtime
from layerops.delivery.settings import ServeSettings
from layerops.repository.factory import open_repository
from tests.delivery.conftest import IRIS_ROW, IRIS_ROWS, SHIPPING_ROW, SHIPPING_ROWS, USER


def json_bodies(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The same rows in every JSON input format MLflow's scoring server takes."""
    names = list(rows[0])
    matrix = [[row[n] for n in names] for row in rows]
    columns = {n: [row[n] for row in rows] for n in names}
    return {
        "dataframe_split": {
            "dataframe_split": {"columns": names, "data": matrix, "index": list(range(len(rows)))}
        },
        "dataframe_split without columns": {"dataframe_split": {"data": matrix}},
        "dataframe_records": {"dataframe_records": rows},
        "instances": {"instances": rows},
        "inputs as records": {"inputs": rows},
        "inputs as columns": {"inputs": columns},
        "with params": {"dataframe_records": rows, "params": {"ignored": 1}},
    }


def invoke(client: TestClient, model: str | None, **kwargs: Any) -> Any:
    """POST /invocations (choosing `model` by query parameter); return the body of a 200."""
    response = client.post("/invocations", params={"model": model} if model else None, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def mlflow_error(response: Any, status: int = 400, code: str = "BAD_REQUEST") -> str:
    """Check MLflow's error shape and status; return the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error_code", "message"} and body["error_code"] == code
    message: str = body["message"]
    return message


def test_ping_health_and_version(client: TestClient) -> None:
    for path in ("/ping", "/health"):
        response = client.get(path)
        assert (response.status_code, response.text) == (200, "\n")
    assert client.get("/ping", headers={"Authorization": ""}).status_code == 200  # public, for probes
    assert client.get("/version").text == __version__


def test_every_format_gives_the_native_predictions(client: TestClient) -> None:
    expected = client.post("/models/iris/predict", json=IRIS_ROWS).json()["predictions"]
    assert expected == ["setosa", "versicolor", "virginica"]
    for label, body in json_bodies(IRIS_ROWS).items():
        assert invoke(client, "iris", json=body) == {"predictions": expected}, label
    csv = pd.DataFrame(IRIS_ROWS).to_csv(index=False)
    response = invoke(client, "iris", content=csv, headers={"Content-Type": "text/csv"})
    assert response == {"predictions": expected}
    utf8 = invoke(client, "iris", content=csv, headers={"Content-Type": "text/csv; charset=utf-8"})
    assert utf8 == response


def test_regressor_with_categoricals_in_every_format(client: TestClient) -> None:
    expected = client.post("/models/shipping/predict", json=SHIPPING_ROWS).json()["predictions"]
    bodies: dict[str, dict[str, Any]] = {
        label: {"json": body} for label, body in json_bodies(SHIPPING_ROWS).items()
    }
    csv = pd.DataFrame(SHIPPING_ROWS).to_csv(index=False)
    bodies["csv"] = {"content": csv, "headers": {"Content-Type": "text/csv"}}
    for label, kwargs in bodies.items():
        predictions = invoke(client, "shipping", **kwargs)["predictions"]
        np.testing.assert_allclose(predictions, expected, rtol=1e-9, err_msg=label)


def test_choosing_the_model(client: TestClient) -> None:
    body = {"dataframe_records": IRIS_ROWS[:1]}
    message = mlflow_error(client.post("/invocations", json=body))
    assert "iris, shipping" in message and "?model=NAME" in message and "X-Model-Name" in message
    by_header = client.post("/invocations", json=body, headers={"X-Model-Name": "iris"})
    assert by_header.status_code == 200 and by_header.json() == {"predictions": ["setosa"]}
    assert by_header.headers["X-Model-Name"] == "iris" and by_header.headers["X-Model-Version"] == "1"
    assert invoke(client, "iris", json=body) == {"predictions": ["setosa"]}
    conflict = client.post("/invocations?model=iris", json=body, headers={"X-Model-Name": "shipping"})
    assert "different models" in mlflow_error(conflict)
    unknown = client.post("/invocations?model=nope", json=body)
    assert "nope" in mlflow_error(unknown, 404, "RESOURCE_DOES_NOT_EXIST")


@pytest.fixture
def iris_only(serve_settings: ServeSettings) -> Iterator[TestClient]:
    """A client of a server that serves iris alone."""
    settings = serve_settings.model_copy(update={"models": ["iris"]})
    with TestClient(
        create_app(build_runtime(settings, open_repository(settings))), headers=USER
    ) as test_client:
        yield test_client


def test_a_single_served_model_answers_without_being_named(iris_only: TestClient) -> None:
    assert invoke(iris_only, None, json={"inputs": IRIS_ROWS}) == {
        "predictions": ["setosa", "versicolor", "virginica"]
    }


def test_bad_json_requests_are_400(client: TestClient) -> None:
    malformed = client.post(
        "/invocations?model=iris", content=b"{oops", headers={"Content-Type": "application/json"}
    )
    assert "malformed JSON" in mlflow_error(malformed)
    cases: list[tuple[Any, str]] = [
        (IRIS_ROWS, "Received a list"),
        ({"rows": IRIS_ROWS}, "exactly one of the input fields"),
        ({"inputs": IRIS_ROWS, "instances": IRIS_ROWS}, "exactly one of the input fields"),
        ({"dataframe_records": {"a": 1}}, "must be a list of records"),
        ({"dataframe_split": {"columns": ["sepal_length"]}}, "'data' field"),
        ({"dataframe_split": {"data": [[1.0, 2.0]]}}, "rows of 4 values"),
        ({"instances": [[1.0, 2.0]]}, "Row 0 has 2 values"),
        ({"inputs": "text"}, "list of records or a dictionary of columns"),
        ({"dataframe_records": [{**IRIS_ROW, "petal_width": "wide"}]}, "petal_width"),
        ({"dataframe_records": [{**IRIS_ROW, "colour": "red"}]}, "unknown field"),
        ({"dataframe_records": []}, "non-empty"),
    ]
    for body, expected in cases:
        assert expected in mlflow_error(client.post("/invocations?model=iris", json=body)), body


def test_unknown_category_names_the_allowed_values(client: TestClient) -> None:
    body = {"dataframe_records": [{**SHIPPING_ROW, "service_level": "teleport"}]}
    message = mlflow_error(client.post("/invocations?model=shipping", json=body))
    assert "teleport" in message and "economy, express, standard" in message


def test_csv_and_content_type_errors(client: TestClient) -> None:
    bad_csv = client.post(
        "/invocations?model=iris", content=b"\xff\xfe\x00", headers={"Content-Type": "text/csv"}
    )
    assert "Failed to parse input as a Pandas DataFrame" in mlflow_error(bad_csv)
    header_only = client.post(
        "/invocations?model=iris", content="sepal_length\n", headers={"Content-Type": "text/csv"}
    )
    assert header_only.status_code == 400
    for content_type, expected in (
        ("text/plain", "only supports the following content types"),
        ("application/json; charset=latin-1", "only supports UTF-8"),
        ("application/json; format=pandas-split", "Unrecognized content type parameter"),
    ):
        response = client.post(
            "/invocations?model=iris", content=b"{}", headers={"Content-Type": content_type}
        )
        assert expected in mlflow_error(response, 415), content_type
