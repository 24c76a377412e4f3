"""Metrics: labelled series in a registry per app, valid exposition, and the request middleware."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from layerops.delivery.auth import KeyStore
from layerops.delivery.metrics import Metrics
from layerops.delivery.middleware import ApiKeyMiddleware, MetricsMiddleware, RequestIdMiddleware


def build_app(metrics: Metrics, *, keys: KeyStore | None = None) -> FastAPI:
    """A tiny app whose predict route names its model, wrapped like the server wraps it."""
    app = FastAPI()

    @app.post("/models/{name}/predict")
    async def predict(name: str, request: Request) -> dict[str, str]:
        request.state.model = name
        request.state.model_version = "7"
        request.state.model_variant = "production"
        return {"model": name}

    @app.get("/in-flight")
    async def in_flight() -> dict[str, float | None]:
        return {"value": metrics.registry.get_sample_value("layerops_in_flight_requests")}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    if keys is not None:
        app.add_middleware(
            ApiKeyMiddleware, keys=keys, public_paths=frozenset(), admin_prefixes=(), metrics_public=False
        )
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def client(metrics: Metrics) -> Iterator[TestClient]:
    with TestClient(build_app(metrics), raise_server_exceptions=False) as client:
        yield client


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_requests_are_counted_and_timed_by_route_template(metrics: Metrics, client: TestClient) -> None:
    for _ in range(2):
        assert client.post("/models/iris/predict").status_code == 200
    labels = {"model": "iris", "version": "7", "variant": "production", "route": "/models/{name}/predict"}
    assert sample(metrics, "layerops_requests_total", **labels, status="200") == 2
    assert sample(metrics, "layerops_request_duration_seconds_count", **labels) == 2
    assert sample(metrics, "layerops_request_duration_seconds_bucket", **labels, le="10.0") == 2
    assert sample(metrics, "layerops_request_duration_seconds_bucket", **labels, le="0.0005") is not None


def test_unknown_routes_and_failures_have_bounded_labels(metrics: Metrics, client: TestClient) -> None:
    client.get("/no/such/path/123")
    client.get("/boom")
    assert (
        sample(
            metrics,
            "layerops_requests_total",
            model="",
            version="",
            variant="",
            route="unmatched",
            status="404",
        )
        == 1
    )
    assert (
        sample(
            metrics, "layerops_requests_total", model="", version="", variant="", route="/boom", status="500"
        )
        == 1
    )
    assert sample(metrics, "layerops_in_flight_requests") == 0


def test_rejections_by_inner_middleware_are_counted(metrics: Metrics) -> None:
    keys = KeyStore.from_sources(["secret"], None, [], None)
    with TestClient(build_app(metrics, keys=keys)) as client:
        assert client.post("/models/iris/predict").status_code == 401
    assert (
        sample(
            metrics,
            "layerops_requests_total",
            model="",
            version="",
            variant="",
            route="unmatched",
            status="401",
        )
        == 1
    )


def test_in_flight_counts_the_running_request(metrics: Metrics, client: TestClient) -> None:
    assert client.get("/in-flight").json() == {"value": 1.0}
    assert sample(metrics, "layerops_in_flight_requests") == 0


def test_prediction_series(metrics: Metrics) -> None:
    metrics.observe_classes("iris", "3", ["setosa", "virginica", "setosa"])
    metrics.observe_values("rent", "1", [0.5, 250.0, float("nan"), float("inf")])
    assert (
        sample(metrics, "layerops_predictions_total", model="iris", version="3", **{"class": "setosa"}) == 2
    )
    assert (
        sample(metrics, "layerops_predictions_total", model="iris", version="3", **{"class": "virginica"})
        == 1
    )
    assert sample(metrics, "layerops_prediction_value_count", model="rent", version="1") == 2
    assert sample(metrics, "layerops_prediction_value_sum", model="rent", version="1") == 250.5
    assert sample(metrics, "layerops_prediction_value_bucket", model="rent", version="1", le="1.0") == 1


def test_model_swap_replaces_info_and_load_series(metrics: Metrics) -> None:
    metrics.observe_load("iris", "1", 0.8)
    metrics.set_model_info("iris", "1", "production", "onnx")
    metrics.observe_load("iris", "2", 0.5)
    metrics.set_model_info("iris", "2", "candidate", "native")
    assert sample(metrics, "layerops_reloads_total", model="iris", outcome="failure") == 0
    metrics.observe_load("iris", "2", 0.6)
    metrics.set_model_info("iris", "2", "production", "onnx")
    metrics.observe_reload("iris", "success")
    metrics.observe_reload("iris", "failure")
    metrics.observe_reload("iris", "success")

    info = "layerops_model_info"
    assert sample(metrics, info, model="iris", version="1", alias="production", engine="onnx") is None
    assert sample(metrics, info, model="iris", version="2", alias="production", engine="onnx") == 1
    assert sample(metrics, info, model="iris", version="2", alias="candidate", engine="native") == 1
    assert sample(metrics, "layerops_model_load_seconds", model="iris", version="1") is None
    assert sample(metrics, "layerops_model_load_seconds", model="iris", version="2") == 0.6
    assert sample(metrics, "layerops_reloads_total", model="iris", outcome="success") == 2
    assert sample(metrics, "layerops_reloads_total", model="iris", outcome="failure") == 1

    metrics.clear_model_info("iris", "candidate")
    assert sample(metrics, info, model="iris", version="2", alias="candidate", engine="native") is None
    assert (
        sample(metrics, "layerops_model_load_seconds", model="iris", version="2") == 0.6
    )  # still production


def test_reload_outcome_is_checked(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="outcome"):
        metrics.observe_reload("iris", "maybe")  # type: ignore[arg-type]


def test_render_is_valid_prometheus_text(metrics: Metrics, client: TestClient) -> None:
    client.post("/models/iris/predict")
    metrics.observe_classes("iris", "7", ["a"])
    metrics.observe_values("rent", "1", [3.0])
    metrics.set_model_info("iris", "7", "production", "onnx")
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain") and "version=" in content_type
    families = {f.name: f for f in text_string_to_metric_families(body.decode("utf-8"))}
    expected = {
        "layerops_requests": "counter",
        "layerops_request_duration_seconds": "histogram",
        "layerops_predictions": "counter",
        "layerops_prediction_value": "histogram",
        "layerops_model_load_seconds": "gauge",
        "layerops_model_info": "gauge",
        "layerops_reloads": "counter",
        "layerops_in_flight_requests": "gauge",
    }
    assert {name: families[name].type for name in expected} == expected
    info = [s for s in families["layerops_model_info"].samples if s.name == "layerops_model_info"]
    assert [(s.labels, s.value) for s in info] == [
        ({"model": "iris", "version": "7", "alias": "production", "engine": "onnx"}, 1.0)
    ]


def test_render_negotiates_openmetrics(metrics: Metrics) -> None:
    body, content_type = metrics.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")


def test_two_metrics_objects_share_nothing() -> None:
    first, second = Metrics(), Metrics()
    first.observe_classes("iris", "1", ["a"])
    first.in_flight.inc()
    assert sample(first, "layerops_predictions_total", model="iris", version="1", **{"class": "a"}) == 1
    assert sample(second, "layerops_predictions_total", model="iris", version="1", **{"class": "a"}) is None
    assert sample(second, "layerops_in_flight_requests") == 0
    assert REGISTRY.get_sample_value("layerops_in_flight_requests") is None  # never the global registry


def test_a_retired_versions_series_go_after_the_grace_period_and_a_served_one_stays() -> None:
    metrics = Metrics(retire_after_seconds=0.2)

    def record(version: str) -> None:
        metrics.observe_request("iris", version, "production", "/models/{name}/predict", 200, 0.001)
        metrics.observe_classes("iris", version, ["setosa"])
        metrics.observe_batch("iris", version, 4, [0.001])
        metrics.observe_values("rent", version, [1.0])

    metrics.set_model_info("iris", "1", "production", "onnx")
    metrics.set_model_info("rent", "1", "production", "onnx")
    record("1")
    metrics.set_model_info("iris", "2", "production", "onnx")  # iris v1 retired; rent v1 still served
    record("2")
    metrics.render()  # within the grace period: nothing goes yet
    assert sample(metrics, "layerops_batch_size_count", model="iris", version="1") == 1
    time.sleep(0.25)
    body = metrics.render()[0].decode()
    assert 'model="iris",version="1"' not in body
    assert sample(metrics, "layerops_batch_size_count", model="iris", version="2") == 1
    assert sample(metrics, "layerops_prediction_value_count", model="rent", version="1") == 1

    # A version served again before its grace period ends keeps its series.
    metrics.set_model_info("iris", "1", "production", "onnx")  # rollback: v2 retired
    metrics.set_model_info("iris", "2", "canary", "onnx")  # and v2 served again at once
    time.sleep(0.25)
    metrics.render()
    assert sample(metrics, "layerops_batch_size_count", model="iris", version="2") == 1
