"""Regressions of the defects found by probing the running server (one test or more per defect)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from layerops.delivery.app import create_app
from layerops.delivery.auth import KeyStore, key_store
from layerops.delivery.http_errors import Transport, redact_paths, transport_of
from layerops.delivery.middleware import TimeoutMiddleware
from layerops.delivery.runtime import build_runtime
from layerops.delivery.settings import ModelRef, ServeSettings
from layerops.errors import LayeropsError
from layerops.numbers import parse_natural
from layerops.repository.api import ModelRepository
from layerops.repository.factory import open_repository
from tests.delivery.conftest import ADMIN, ADMIN_KEY, IRIS_ROW, USER, USER_KEY

LAYEROPS = str(Path(sys.executable).parent / "layerops")


def body_format(response: Any) -> Transport:
    """Which protocol's error body a response carries (asserting it is one of the three exactly)."""
    body = response.json()
    if set(body) == {"error_code", "message"}:
        assert isinstance(body["error_code"], str) and isinstance(body["message"], str)
        return Transport.MLFLOW
    assert set(body) == {"error"}, body
    if isinstance(body["error"], str):
        return Transport.V2
    assert {"type", "message"} <= set(body["error"]), body
    return Transport.NATIVE


# --- 1. an empty key source never opens the server --------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_a_key_file_without_digests_refuses_start_up(tmp_path: Path, host: str) -> None:
    empty = tmp_path / "keys.txt"
    empty.write_text("# none\n\n   # still none\n")
    settings = ServeSettings(home=tmp_path, host=host, api_key_file=empty)
    with pytest.raises(LayeropsError, match="LAYEROPS_API_KEY_FILE hold no API key"):
        key_store(settings)
    admin_only = ServeSettings(home=tmp_path, host=host, admin_api_key_file=empty)
    with pytest.raises(LayeropsError, match="LAYEROPS_ADMIN_API_KEY_FILE hold no API key"):
        key_store(admin_only)


def test_without_any_key_source_only_loopback_or_the_explicit_flag_is_open(tmp_path: Path) -> None:
    keys, anonymous = key_store(ServeSettings(home=tmp_path, host="127.0.0.1"))
    assert anonymous and not keys.enabled
    with pytest.raises(LayeropsError, match=r"refusing to serve on 0\.0\.0\.0 without API keys"):
        key_store(ServeSettings(home=tmp_path, host="0.0.0.0"))
    _, anonymous = key_store(ServeSettings(home=tmp_path, host="0.0.0.0", insecure_no_auth=True))
    assert anonymous
    keys, anonymous = key_store(ServeSettings(home=tmp_path, host="0.0.0.0", api_keys=["k"]))
    assert not anonymous and keys.enabled


def test_serve_with_an_empty_key_file_exits_with_one_line(served_home: Path, tmp_path: Path) -> None:
    empty = tmp_path / "keys.txt"
    empty.write_text("# none\n")
    result = subprocess.run(
        [LAYEROPS, "--home", str(served_home), "serve", "--host", "0.0.0.0", "--api-key-file", str(empty)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1 and "hold no API key" in lines[0], lines


# --- 3. integers are read one way ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("3", 3), ("007", 7), ("¹", None), ("٣", None), (" 3", None), ("1_000", None), ("-1", None), ("", None)],
)
def test_parse_natural_takes_ascii_digits_only(text: str, value: int | None) -> None:
    assert parse_natural(text) == value
    assert parse_natural(text.encode()) == value


def test_model_references_refuse_unicode_digits() -> None:
    assert ModelRef.parse("iris@3").version == 3
    assert ModelRef.parse("iris@production").version is None
    for bad in ("iris@¹", "iris@prod uction", "ir/is@1", "iris@"):
        with pytest.raises(ValueError, match="bad model reference"):
            ModelRef.parse(bad)


def test_serve_with_a_unicode_digit_version_is_one_line(served_home: Path) -> None:
    result = subprocess.run(
        [LAYEROPS, "--home", str(served_home), "serve", "--model", "iris@¹"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1 and "bad model reference" in lines[0], lines


def test_unicode_digits_in_paths_queries_and_headers_are_4xx(client: TestClient) -> None:
    for path in ("/v2/models/iris/versions/%C2%B9/ready", "/v2/models/iris/versions/%C2%B9"):
        response = client.get(path)
        assert response.status_code == 404 and body_format(response) is Transport.V2
    infer = {"inputs": [{"name": "sepal_length", "shape": [1], "datatype": "FP64", "data": [5.1]}]}
    response = client.post("/v2/models/iris/versions/%C2%B2/infer", json=infer)
    assert response.status_code == 404 and body_format(response) is Transport.V2
    response = client.post("/models/iris/versions/%C2%B2/predict", json=IRIS_ROW)
    assert response.status_code == 422 and body_format(response) is Transport.NATIVE
    response = client.get("/v2/models/iris?model_version=%C2%B9")
    assert response.status_code in (200, 404) and response.status_code != 500
    headers = {"Inference-Header-Content-Length": b"\xb9"}  # '¹' in latin-1, as HTTP headers are read
    response = client.post("/v2/models/iris/infer", content=b'{"inputs": []}', headers=headers)
    assert response.status_code == 400 and body_format(response) is Transport.V2
    response = client.post("/models/iris/predict", content=b"{}", headers={"Content-Length": b"\xb9"})
    assert response.status_code < 500


# --- 5. every error on a transport's path speaks that transport's format ------------------------


@pytest.fixture
def small_limits_client(serve_settings: ServeSettings) -> Iterator[TestClient]:
    settings = serve_settings.model_copy(update={"max_body_bytes": 2000})
    with TestClient(
        create_app(build_runtime(settings, open_repository(settings))), headers=USER
    ) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("method", "path", "status", "transport"),
    [
        ("POST", "/models/iris/predict", 401, Transport.NATIVE),
        ("POST", "/v2/models/iris/infer", 401, Transport.V2),
        ("POST", "/invocations", 401, Transport.MLFLOW),
        ("GET", "/no/such/route", 404, Transport.NATIVE),
        ("GET", "/v2/no/such/route", 404, Transport.V2),
        ("GET", "/models/iris/predict", 405, Transport.NATIVE),
        ("GET", "/v2/models/iris/infer", 405, Transport.V2),
        ("GET", "/invocations", 405, Transport.MLFLOW),
        ("TRACE", "/admin/reload", 405, Transport.NATIVE),
    ],
)
def test_router_and_auth_errors_speak_the_transports_format(
    small_limits_client: TestClient, method: str, path: str, status: int, transport: Transport
) -> None:
    headers = {"Authorization": ""} if status == 401 else {}
    response = small_limits_client.request(method, path, headers=headers)
    assert response.status_code == status, response.text
    assert body_format(response) is transport
    if status == 405:  # with a user key, an anonymous caller, or an admin key alike
        for other in (USER, {"Authorization": ""}, ADMIN):
            assert small_limits_client.request(method, path, headers=other).status_code == 405


@pytest.mark.parametrize(
    ("path", "transport"),
    [
        ("/models/iris/predict", Transport.NATIVE),
        ("/v2/models/iris/infer", Transport.V2),
        ("/invocations", Transport.MLFLOW),
    ],
)
def test_413_speaks_the_transports_format(
    small_limits_client: TestClient, path: str, transport: Transport
) -> None:
    response = small_limits_client.post(path, content=b"[" + b"1," * 2000 + b"1]")
    assert response.status_code == 413 and body_format(response) is transport
    assert "2000 bytes" in str(response.json())


@pytest.mark.parametrize(
    ("path", "transport"),
    [
        ("/models/m/predict", Transport.NATIVE),
        ("/v2/models/m/infer", Transport.V2),
        ("/invocations", Transport.MLFLOW),
    ],
)
def test_504_speaks_the_transports_format(path: str, transport: Transport) -> None:
    app = FastAPI()

    async def slow(request: Request) -> dict[str, str]:
        await asyncio.sleep(1)
        return {}

    app.add_api_route(path, slow, methods=["POST"])
    app.add_middleware(TimeoutMiddleware, default_seconds=0.05)
    with TestClient(app) as test_client:
        response = test_client.post(path)
    assert response.status_code == 504 and body_format(response) is transport


def test_transport_of_paths() -> None:
    assert transport_of("/v2") is Transport.V2 and transport_of("/v2/models/x/infer") is Transport.V2
    assert transport_of("/v2x") is Transport.NATIVE
    assert transport_of("/invocations") is Transport.MLFLOW and transport_of("/ping") is Transport.MLFLOW
    assert transport_of("/models/x/predict") is Transport.NATIVE


# --- 6. versions on demand, paths, the V2 server metadata ----------------------------------------


class CountingRepository:
    """The real repository, counting the version look-ups made through it (a fake, not a mock)."""

    def __init__(self, inner: ModelRepository) -> None:
        self.inner = inner
        self.lookups: list[tuple[str, int]] = []

    def get_version(self, name: str, version: int) -> Any:
        self.lookups.append((name, version))
        return self.inner.get_version(name, version)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.inner, attribute)


def test_versions_load_on_demand_only_where_allowed(serve_settings: ServeSettings) -> None:
    repository = open_repository(serve_settings)
    with TestClient(create_app(build_runtime(serve_settings, repository)), headers=USER) as test_client:
        response = test_client.post("/models/iris/versions/2/predict", json=IRIS_ROW)
        assert (
            response.status_code == 404
            and "LAYEROPS_ON_DEMAND_VERSIONS" in response.json()["error"]["message"]
        )
        assert test_client.post("/models/iris/versions/1/predict", json=IRIS_ROW).status_code == 200  # served

    counting = CountingRepository(repository)
    settings = serve_settings.model_copy(update={"on_demand_versions": ["iris@*"]})
    with TestClient(create_app(build_runtime(settings, counting)), headers=USER) as test_client:  # type: ignore[arg-type]
        before = len(counting.lookups)
        for _ in range(3):  # a version that fails to load is not looked up again on every request
            response = test_client.post("/models/iris/versions/99/predict", json=IRIS_ROW)
            assert response.status_code == 404, response.text
        assert counting.lookups[before:] == [("iris", 99)]
        response = test_client.post("/models/shipping/versions/2/predict", json=IRIS_ROW)
        assert response.status_code == 404  # shipping is not allowed on demand


def test_on_demand_patterns_are_checked() -> None:
    settings = ServeSettings(on_demand_versions="iris@3, shipping@*")
    assert settings.allows_on_demand("iris", 3) and not settings.allows_on_demand("iris", 4)
    assert settings.allows_on_demand("shipping", 9) and not settings.allows_on_demand("other", 1)
    assert ServeSettings(on_demand_versions="*").allows_on_demand("any", 1)
    with pytest.raises(ValueError, match="bad on-demand version"):
        ServeSettings(on_demand_versions="iris@¹")


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("cannot read /home/me/.layerops/artifacts/1/abc/model.onnx: gone", "cannot read <path>: gone"),
        ("registry sqlite:////srv/x/mlflow.db is locked", "registry <path> is locked"),
        ("bucket s3://models/iris/3 missing", "bucket <path> missing"),
        ("model 'iris' v2: reference rows differ by 1e-3", "model 'iris' v2: reference rows differ by 1e-3"),
    ],
)
def test_redact_paths(text: str, redacted: str) -> None:
    assert redact_paths(text) == redacted


def test_public_readiness_hides_paths_the_admin_view_shows_them(client: TestClient) -> None:
    registry = client.app.state.runtime.registry  # type: ignore[attr-defined]
    registry.fail("iris", "model iris@production: cannot read /srv/secret/artifacts/model.onnx")
    try:
        public = client.get("/health/ready", headers={"Authorization": ""}).json()
        assert public["failures"] == {"iris": "model iris@production: cannot read <path>"}
        assert client.get("/admin/status").status_code == 403
        admin = client.get("/admin/status", headers=ADMIN).json()
        assert "/srv/secret/artifacts/model.onnx" in admin["failures"]["iris"]
    finally:
        registry.recovered("iris")


def test_v2_server_metadata_advertises_binary_tensors(client: TestClient) -> None:
    assert client.get("/v2").json()["extensions"] == ["binary_tensor_data"]


def test_key_store_repr_and_role_never_show_keys() -> None:
    store = KeyStore.from_sources([USER_KEY], None, [ADMIN_KEY], None)
    assert USER_KEY not in repr(store) and ADMIN_KEY not in repr(store)
