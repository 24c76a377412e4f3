"""The delivery middleware on a tiny real FastAPI app, driven in-process with TestClient."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from layerops.delivery.auth import KeyStore, Role
from layerops.delivery.middleware import (
    AccessLogMiddleware,
    ApiKeyMiddleware,
    BodySizeLimitMiddleware,
    RequestIdMiddleware,
    TimeoutMiddleware,
    model_from_path,
)
from layerops.errors import LayeropsError

USER_KEY = "user-key-0123456789abcdef"
ADMIN_KEY = "admin-key-fedcba9876543210"
PUBLIC = frozenset({"/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready", "/ping"})


def build_app(*layers: tuple[type[Any], dict[str, Any]]) -> FastAPI:
    """A tiny app with the given middleware, listed outermost first."""
    started: list[bool] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started.append(True)
        yield

    app = FastAPI(lifespan=lifespan)
    app.state.started = started

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, Any]:
        body = await request.body()
        return {"length": len(body), "request_id": getattr(request.state, "request_id", None)}

    @app.get("/slow")
    async def slow(seconds: float = 0.0) -> dict[str, float]:
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    @app.post("/models/{name}/predict")
    async def predict(name: str, request: Request, sleep: float = 0.0) -> dict[str, str]:
        await asyncio.sleep(sleep)
        request.state.model = name
        request.state.model_version = "3"
        return {"model": name}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first,"
            await asyncio.sleep(0.15)
            yield b"second"

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/own-timeout")
    async def own_timeout() -> None:
        raise TimeoutError("an upstream call timed out")

    @app.get("/admin/reload")
    async def reload() -> dict[str, str]:
        return {"reloaded": "yes"}

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @app.get("/metrics")
    async def metrics() -> dict[str, str]:
        return {"metrics": "here"}

    for cls, options in reversed(layers):  # add_middleware puts the last one added outermost
        app.add_middleware(cls, **options)
    return app


def auth_options(metrics_public: bool = False, store: KeyStore | None = None) -> dict[str, Any]:
    keys = store if store is not None else KeyStore.from_sources([USER_KEY], None, [ADMIN_KEY], None)
    return {
        "keys": keys,
        "public_paths": PUBLIC,
        "admin_prefixes": ("/admin/",),
        "metrics_public": metrics_public,
    }


def error_type(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"]["message"], str)
    return str(body["error"]["type"])


# --- request id -------------------------------------------------------------------------------


@pytest.fixture
def id_client() -> Iterator[TestClient]:
    app = build_app(
        (RequestIdMiddleware, {}),
        (ApiKeyMiddleware, auth_options()),
        (BodySizeLimitMiddleware, {"max_bytes": 10}),
    )
    with TestClient(app) as client:
        yield client


def test_request_id_generated_when_absent(id_client: TestClient) -> None:
    response = id_client.post("/echo", content=b"hi", headers={"X-API-Key": USER_KEY})
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32 and int(request_id, 16) >= 0
    assert response.json()["request_id"] == request_id


def test_request_id_accepted_when_sane(id_client: TestClient) -> None:
    sent = "trace-42.a_b:c-" + "x" * 100
    response = id_client.post("/echo", content=b"", headers={"X-Request-ID": sent, "X-API-Key": USER_KEY})
    assert response.headers["x-request-id"] == sent
    assert response.json()["request_id"] == sent


@pytest.mark.parametrize("bad", ["has space", "semi;colon", "x" * 129, "ünïcode", ""])
def test_request_id_replaced_when_invalid(id_client: TestClient, bad: str) -> None:
    response = id_client.post(
        "/echo", content=b"", headers={"X-Request-ID": bad.encode("utf-8"), "X-API-Key": USER_KEY}
    )
    assert response.headers["x-request-id"] != bad
    assert len(response.headers["x-request-id"]) == 32
    assert len(response.headers.get_list("x-request-id")) == 1


def test_request_id_on_errors_from_inner_middleware(id_client: TestClient) -> None:
    unauthorized = id_client.get("/slow", headers={"X-Request-ID": "r-401"})
    too_large = id_client.post(
        "/echo", content=b"x" * 11, headers={"X-Request-ID": "r-413", "X-API-Key": USER_KEY}
    )
    assert (unauthorized.status_code, unauthorized.headers["x-request-id"]) == (401, "r-401")
    assert (too_large.status_code, too_large.headers["x-request-id"]) == (413, "r-413")


# --- access log -------------------------------------------------------------------------------


def test_access_log_is_one_json_line_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    app = build_app((RequestIdMiddleware, {}), (AccessLogMiddleware, {}), (ApiKeyMiddleware, auth_options()))
    caplog.set_level(logging.INFO, logger="layerops.access")
    with TestClient(app) as client:
        response = client.post(
            "/models/iris/predict?token=query-secret",
            content=b'{"secret_body": 1}',
            headers={
                "Authorization": f"Bearer {USER_KEY}",
                "X-Request-ID": "req-1",
                "Cookie": "c=cookie-secret",
            },
        )
    assert response.status_code == 200
    records = [r for r in caplog.records if r.name == "layerops.access"]
    assert len(records) == 1 and records[0].levelno == logging.INFO
    line = records[0].getMessage()
    assert "\n" not in line
    for secret in (USER_KEY, KeyStore.hash_key(USER_KEY), "query-secret", "secret_body", "cookie-secret"):
        assert secret not in line
    entry = orjson.loads(line)
    assert entry["method"] == "POST"
    assert entry["path"] == "/models/iris/predict"
    assert entry["route"] == "/models/{name}/predict"
    assert entry["status"] == 200
    assert entry["request_id"] == "req-1"
    assert (entry["model"], entry["model_version"]) == ("iris", "3")
    assert entry["client"] == "testclient"
    assert entry["bytes_out"] == len(response.content)
    assert entry["duration_ms"] >= 0


def test_access_log_records_rejections_and_unmatched_routes(caplog: pytest.LogCaptureFixture) -> None:
    app = build_app((AccessLogMiddleware, {"logger_name": "test.access"}), (ApiKeyMiddleware, auth_options()))
    caplog.set_level(logging.INFO, logger="test.access")
    with TestClient(app) as client:
        client.get("/slow", headers={"X-API-Key": "wrong-key"})
        client.get("/nowhere", headers={"X-API-Key": USER_KEY})
    entries = [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "test.access"]
    assert [(e["status"], e["route"], e["model"]) for e in entries] == [(401, None, None), (404, None, None)]
    assert "wrong-key" not in caplog.text


# --- body size limit --------------------------------------------------------------------------


@pytest.fixture
def small_body_client() -> Iterator[TestClient]:
    with TestClient(build_app((BodySizeLimitMiddleware, {"max_bytes": 16}))) as client:
        yield client


def test_body_within_limit_passes(small_body_client: TestClient) -> None:
    response = small_body_client.post("/echo", content=b"x" * 16)
    assert response.status_code == 200 and response.json()["length"] == 16


def test_413_from_content_length_before_reading(small_body_client: TestClient) -> None:
    response = small_body_client.post("/echo", content=b"x" * 17)
    assert response.status_code == 413 and error_type(response) == "payload_too_large"
    assert "16 bytes" in response.json()["error"]["message"]


def test_413_from_streamed_body_without_content_length(small_body_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"x" * 10
        yield b"x" * 10

    response = small_body_client.post("/echo", content=chunks())
    assert response.status_code == 413 and error_type(response) == "payload_too_large"


def asgi_receiver(chunks: list[bytes]) -> Callable[[], Any]:
    messages: list[Message] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    return receive


def http_scope(path: str = "/", headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {"type": "http", "method": "POST", "path": path, "root_path": "", "headers": headers or []}


def test_streamed_chunks_are_cut_off_at_the_limit() -> None:
    seen: list[int] = []

    async def reader(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            seen.append(len(message.get("body", b"")))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read it all"})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    limited = BodySizeLimitMiddleware(reader, max_bytes=10)
    asyncio.run(limited(http_scope(), asgi_receiver([b"x" * 6, b"x" * 6, b"x" * 6]), send))
    assert seen == [6]  # the second chunk crossed the limit and never reached the app
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 413 and orjson.loads(sent[1]["body"])["error"]["type"] == "payload_too_large"


def test_streamed_overflow_after_response_started_just_stops() -> None:
    async def echo_as_it_reads(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            message = await receive()
            await send({"type": "http.response.body", "body": message["body"], "more_body": True})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    limited = BodySizeLimitMiddleware(echo_as_it_reads, max_bytes=10)
    asyncio.run(limited(http_scope(), asgi_receiver([b"a" * 6, b"b" * 6, b"c" * 6]), send))
    assert [m.get("status") for m in sent] == [200, None]  # no 413 after a 200 started
    assert sent[1]["body"] == b"a" * 6


# --- API keys ---------------------------------------------------------------------------------


@pytest.fixture
def auth_client() -> Iterator[TestClient]:
    with TestClient(build_app((ApiKeyMiddleware, auth_options()))) as client:
        yield client


def test_missing_key_is_401_with_challenge(auth_client: TestClient) -> None:
    response = auth_client.get("/slow")
    assert response.status_code == 401 and error_type(response) == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers",
    [{"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {USER_KEY}"}],
)
def test_wrong_key_is_401_and_never_echoed(auth_client: TestClient, headers: dict[str, str]) -> None:
    response = auth_client.get("/slow", headers=headers)
    assert response.status_code == 401 and error_type(response) == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"
    assert "wrong" not in response.text and USER_KEY not in response.text


@pytest.mark.parametrize("headers", [{"X-API-Key": USER_KEY}, {"Authorization": f"bearer  {USER_KEY} "}])
def test_user_key_opens_user_routes(auth_client: TestClient, headers: dict[str, str]) -> None:
    assert auth_client.get("/slow", headers=headers).status_code == 200


def test_user_key_on_admin_path_is_403(auth_client: TestClient) -> None:
    response = auth_client.get("/admin/reload", headers={"X-API-Key": USER_KEY})
    assert response.status_code == 403 and error_type(response) == "forbidden"


def test_admin_key_may_do_everything(auth_client: TestClient) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert auth_client.get("/admin/reload", headers=headers).json() == {"reloaded": "yes"}
    assert auth_client.get("/slow", headers=headers).status_code == 200


def test_public_paths_are_open(auth_client: TestClient) -> None:
    assert auth_client.get("/health/live").status_code == 200
    assert auth_client.get("/v2/health/ready").status_code == 404  # open, so the router answers
    assert auth_client.get("/health/live/extra").status_code == 401  # exact paths only


@pytest.mark.parametrize(("metrics_public", "status"), [(True, 200), (False, 401)])
def test_metrics_open_only_when_public(metrics_public: bool, status: int) -> None:
    with TestClient(build_app((ApiKeyMiddleware, auth_options(metrics_public)))) as client:
        assert client.get("/metrics").status_code == status
        assert client.get("/metrics", headers={"X-API-Key": USER_KEY}).status_code == 200


def test_an_empty_key_store_opens_nothing_unless_anonymous_is_explicit() -> None:
    store = KeyStore.from_sources([], None, [], None)
    assert not store.enabled
    with TestClient(build_app((ApiKeyMiddleware, auth_options(store=store)))) as client:
        assert client.get("/admin/reload").status_code == 401
        assert client.get("/admin/reload", headers={"X-API-Key": "anything"}).status_code == 401
    with TestClient(
        build_app((ApiKeyMiddleware, {**auth_options(store=store), "anonymous": True}))
    ) as client:
        assert client.get("/admin/reload").status_code == 200


def test_anonymous_mode_and_keys_exclude_each_other() -> None:
    with pytest.raises(ValueError, match="exclude"):
        ApiKeyMiddleware(build_app(), **{**auth_options(), "anonymous": True})


def test_admin_prefix_matches_segments_only() -> None:
    auth = ApiKeyMiddleware(
        build_app(),
        keys=KeyStore(),
        public_paths=frozenset(),
        admin_prefixes=("/admin/",),
        metrics_public=False,
    )
    assert auth.is_admin_path("/admin") and auth.is_admin_path("/admin/reload")
    assert not auth.is_admin_path("/administer") and not auth.is_admin_path("/models/admin")


def test_key_file_parsing(tmp_path: Path) -> None:
    key_file = tmp_path / "keys.txt"
    key_file.write_text(
        f"# user keys\n\n{KeyStore.hash_key('alpha')}  # alice\n   {KeyStore.hash_key('beta').upper()}\n"
    )
    admin_file = tmp_path / "admin.txt"
    admin_file.write_text(KeyStore.hash_key("root") + "\n")
    store = KeyStore.from_sources(["gamma"], key_file, [], admin_file)
    assert store.enabled and repr(store) == "KeyStore(user_keys=3, admin_keys=1)"
    assert [store.check(k) for k in ("alpha", "beta", "gamma", "root", "delta")] == [
        Role.USER,
        Role.USER,
        Role.USER,
        Role.ADMIN,
        None,
    ]


def test_malformed_key_file_line_names_file_and_line_but_not_the_text(tmp_path: Path) -> None:
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"# ok\n{KeyStore.hash_key('alpha')}\nplain-secret-key\n")
    with pytest.raises(LayeropsError, match=r"keys\.txt:3: expected a SHA-256") as info:
        KeyStore.from_sources([], key_file, [], None)
    assert "plain-secret-key" not in str(info.value)


def test_missing_key_file_is_a_layerops_error(tmp_path: Path) -> None:
    with pytest.raises(LayeropsError, match="cannot read API key file"):
        KeyStore.from_sources([], None, [], tmp_path / "absent.txt")


def test_hash_key_is_sha256_hex() -> None:
    assert KeyStore.hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize("presented", ["k0", "k2", "a1", "nobody"])
def test_every_digest_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch, presented: str) -> None:
    store = KeyStore.from_sources(["k0", "k1", "k2"], None, ["a0", "a1"], None)
    compared: list[bytes] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)  # the middleware looks it up per call
    store.check(presented)
    expected = {KeyStore.hash_key(k).encode() for k in ("k0", "k1", "k2", "a0", "a1")}
    assert len(compared) == 5 and set(compared) == expected


# --- timeout ----------------------------------------------------------------------------------


@pytest.fixture
def timeout_client() -> Iterator[TestClient]:
    options = {"default_seconds": 1.0, "per_model": {"hasty": 0.05}}
    app = build_app((RequestIdMiddleware, {}), (TimeoutMiddleware, options))
    with TestClient(app) as client:
        yield client


def test_504_on_slow_model_with_override(timeout_client: TestClient) -> None:
    start = time.perf_counter()
    response = timeout_client.post("/models/hasty/predict?sleep=0.5", headers={"X-Request-ID": "t-1"})
    assert time.perf_counter() - start < 0.4
    assert response.status_code == 504 and error_type(response) == "timeout"
    assert response.headers["x-request-id"] == "t-1"


def test_default_timeout_applies_to_other_models(timeout_client: TestClient) -> None:
    assert timeout_client.post("/models/patient/predict?sleep=0.1").status_code == 200


def test_started_response_is_not_cut_off() -> None:
    app = build_app((TimeoutMiddleware, {"default_seconds": 0.05, "per_model": {}}))
    with TestClient(app) as client:
        response = client.get("/stream")
    assert response.status_code == 200 and response.text == "first,second"


def test_the_apps_own_timeout_error_is_not_a_504(timeout_client: TestClient) -> None:
    with pytest.raises(TimeoutError, match="upstream"):
        timeout_client.get("/own-timeout")


def test_non_positive_timeouts_are_refused() -> None:
    with pytest.raises(ValueError, match="hasty"):
        TimeoutMiddleware(build_app(), default_seconds=1.0, per_model={"hasty": 0})


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/models/iris/predict", "iris"),
        ("/models/iris", "iris"),
        ("/v2/models/iris/versions/3/infer", "iris"),
        ("/v2/models/iris/infer", "iris"),
        ("/invocations", None),
        ("/models", None),
        ("/v2/health/live", None),
    ],
)
def test_model_from_path(path: str, model: str | None) -> None:
    assert model_from_path(path) == model


# --- all together -----------------------------------------------------------------------------


def test_lifespan_passes_through_the_whole_stack() -> None:
    app = build_app(
        (RequestIdMiddleware, {}),
        (AccessLogMiddleware, {}),
        (ApiKeyMiddleware, auth_options()),
        (BodySizeLimitMiddleware, {"max_bytes": 100}),
        (TimeoutMiddleware, {"default_seconds": 1.0, "per_model": {}}),
    )
    with TestClient(app) as client:
        assert app.state.started == [True]
        response = client.post("/echo", content=b"{}", headers={"X-API-Key": USER_KEY})
        assert response.status_code == 200
