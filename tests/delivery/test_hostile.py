"""The hostile-input catalogue: every case over all three transports gets a 4xx in that transport's
error body, in bounded time, without the server's memory growing.

Transports: native (`POST /models/iris/predict`), KServe V2 (`POST /v2/models/iris/infer`) and
MLflow (`POST /invocations?model=iris`). The app runs in this process, so its RSS is ours: it is
read after each case (after a collection and `malloc_trim`, as the server does after loads).
Duplicate JSON keys are not an error: the last value wins, as in Python's `json`, orjson and
JavaScript; the case checks that a request cannot smuggle a second value past validation.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import psutil
import pytest
from fastapi.testclient import TestClient

from layerops.delivery.app import create_app
from layerops.delivery.http_errors import Transport
from layerops.delivery.runtime import build_runtime
from layerops.delivery.settings import ServeSettings
from layerops.repository.factory import open_repository
from tests.delivery.conftest import IRIS_ROW, SHIPPING_ROW
from tests.delivery.test_hardening import body_format

pytestmark = pytest.mark.slow

LIMIT = 10 * 2**20  # the default LAYEROPS_MAX_BODY_BYTES
SECONDS = 10.0
"""Most wall time one hostile request may take (a 10 MiB body included), on a busy CI machine."""
RSS_GROWTH_MIB = 64.0
"""Most the process may hold on to after a case, once its garbage is collected."""
FEATURES = list(IRIS_ROW)


@dataclass(frozen=True)
class Request:
    """One request: path, body, content type."""

    path: str
    body: bytes
    content_type: str = "application/json"


def native(rows: Any) -> Request:
    return Request("/models/iris/predict", orjson.dumps(rows))


def v2_columns(columns: dict[str, list[Any]], datatype: str = "FP64") -> Request:
    inputs = [{"name": n, "shape": [len(v)], "datatype": datatype, "data": v} for n, v in columns.items()]
    return Request("/v2/models/iris/infer", orjson.dumps({"inputs": inputs}))


def v2(rows: list[dict[str, Any]]) -> Request:
    return v2_columns({name: [row.get(name) for row in rows] for name in rows[0]})


def mlflow(rows: Any) -> Request:
    return Request("/invocations?model=iris", orjson.dumps({"dataframe_records": rows}))


TRANSPORTS: dict[Transport, Callable[[Any], Request]] = {
    Transport.NATIVE: native,
    Transport.V2: v2,
    Transport.MLFLOW: mlflow,
}


def raw(transport: Transport, body: bytes, content_type: str = "application/json") -> Request:
    """The same bytes to the transport's inference path."""
    return Request(TRANSPORTS[transport]([IRIS_ROW]).path, body, content_type)


def padded_to(request: Request, size: int) -> Request:
    """`request` with whitespace after its JSON so the body is exactly `size` bytes."""
    return Request(request.path, request.body + b" " * (size - len(request.body)), request.content_type)


def wide_row(n: int) -> dict[str, Any]:
    return {**IRIS_ROW, **{f"x{i}": 0 for i in range(n)}}


# Each case: a name and, per transport, the request and the status it must get.
Case = Callable[[Transport], tuple[Request, int]]
CASES: dict[str, Case] = {
    "malformed JSON": lambda t: (raw(t, b'{"inputs": [1, 2'), 400),
    "truncated JSON": lambda t: (raw(t, TRANSPORTS[t]([IRIS_ROW]).body[:-3]), 400),
    "empty body": lambda t: (raw(t, b""), 400),
    "XML body": lambda t: (
        raw(t, b"<row><a>1</a></row>", "application/xml"),
        415 if t is Transport.MLFLOW else 400,
    ),
    "a JSON string": lambda t: (raw(t, b'"just a string"'), 400 if t is not Transport.NATIVE else 422),
    "deep nesting": lambda t: (raw(t, b"[" * 200_000 + b"]" * 200_000), 400),
    "deep nesting in a value": lambda t: (
        raw(t, b'{"sepal_length": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
        400,
    ),
    "body at the limit + 1 byte": lambda t: (padded_to(TRANSPORTS[t]([IRIS_ROW]), LIMIT + 1), 413),
    "1,000,000 rows": lambda t: (
        v2_columns({n: [1.0] * 1_000_000 for n in FEATURES[:1]})
        if t is Transport.V2
        else TRANSPORTS[t]([{}] * 1_000_000),
        400 if t is not Transport.NATIVE else 422,
    ),
    "250,000 fields": lambda t: (
        v2_columns({f"x{i}": [0] for i in range(100_000)})  # 250,000 tensors pass 10 MiB
        if t is Transport.V2
        else TRANSPORTS[t]([wide_row(250_000)]),
        400 if t is not Transport.NATIVE else 422,
    ),
    "huge float": lambda t: (raw(t, TRANSPORTS[t]([IRIS_ROW]).body.replace(b"5.1", b"1e999")), 400),
    "huge integer": lambda t: (
        raw(t, TRANSPORTS[t]([IRIS_ROW]).body.replace(b"5.1", b"1" + b"0" * 400)),
        400,  # beyond float range: the JSON parser refuses it
    ),
    "NaN literal": lambda t: (raw(t, TRANSPORTS[t]([IRIS_ROW]).body.replace(b"5.1", b"NaN")), 400),
    "NaN as a string": lambda t: (
        TRANSPORTS[t]([{**IRIS_ROW, "sepal_length": "NaN"}]),
        400 if t is not Transport.NATIVE else 422,
    ),
    "Infinity as a string": lambda t: (
        TRANSPORTS[t]([{**IRIS_ROW, "petal_width": "Infinity"}]),
        400 if t is not Transport.NATIVE else 422,
    ),
    "a Unicode digit as a number": lambda t: (
        TRANSPORTS[t]([{**IRIS_ROW, "sepal_length": "¹"}]),
        400 if t is not Transport.NATIVE else 422,
    ),
    "control characters in a field name": lambda t: (
        TRANSPORTS[t]([{**IRIS_ROW, "sepal\x00length\x1b[2J": 1.0}]),
        400 if t is not Transport.NATIVE else 422,
    ),
    "an object where a number goes": lambda t: (
        TRANSPORTS[t]([{**IRIS_ROW, "petal_length": {"$gt": 1}}]),
        400 if t is not Transport.NATIVE else 422,
    ),
}


@pytest.fixture(scope="module")
def hostile_client(served_home: Any) -> Iterator[TestClient]:
    settings = ServeSettings(home=served_home, api_keys=["k" * 24], reload_interval_seconds=0)
    app = create_app(build_runtime(settings, open_repository(settings)))
    with TestClient(app, headers={"Authorization": "Bearer " + "k" * 24}) as client:
        for builder in TRANSPORTS.values():  # warm every path once, so the baseline holds its imports
            request = builder([IRIS_ROW])
            assert client.post(request.path, content=request.body).status_code == 200
        yield client


def _settled_rss_mib() -> float:
    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    return float(psutil.Process().memory_info().rss) / 2**20


@pytest.mark.parametrize("transport", list(TRANSPORTS), ids=lambda t: t.value)
@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_is_a_clean_4xx(hostile_client: TestClient, name: str, transport: Transport) -> None:
    request, status = CASES[name](transport)
    before = _settled_rss_mib()
    started = time.perf_counter()
    response = hostile_client.post(
        request.path, content=request.body, headers={"Content-Type": request.content_type}
    )
    elapsed = time.perf_counter() - started
    assert response.status_code == status, response.text[:500]
    assert body_format(response) is transport
    assert elapsed < SECONDS, f"{name}: {elapsed:.1f} s"
    grown = _settled_rss_mib() - before
    assert grown < RSS_GROWTH_MIB, f"{name}: the process kept {grown:.0f} MiB"
    assert "Traceback" not in response.text


def test_a_body_exactly_at_the_limit_is_served(hostile_client: TestClient) -> None:
    for builder in TRANSPORTS.values():
        request = padded_to(builder([IRIS_ROW]), LIMIT)
        assert len(request.body) == LIMIT
        assert hostile_client.post(request.path, content=request.body).status_code == 200


def test_a_250k_column_csv_is_refused_before_parsing(hostile_client: TestClient) -> None:
    header = ",".join([*FEATURES, *(f"x{i}" for i in range(250_000))])
    body = (header + "\n" + ",".join(["1"] * (250_000 + 4)) + "\n").encode()
    assert len(body) > 2 * 2**20
    started = time.perf_counter()
    response = hostile_client.post(
        "/invocations?model=iris", content=body, headers={"Content-Type": "text/csv"}
    )
    assert time.perf_counter() - started < 2.0
    assert response.status_code == 400 and "LAYEROPS_MAX_FIELDS" in response.json()["message"]


def test_a_csv_with_too_many_rows_reads_one_past_the_limit(hostile_client: TestClient) -> None:
    body = (",".join(FEATURES) + "\n" + "5.1,3.5,1.4,0.2\n" * 200_000).encode()
    response = hostile_client.post(
        "/invocations?model=iris", content=body, headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 400 and "exceeds the limit of 10000 rows" in response.json()["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/models/..%2F..%2Fetc%2Fpasswd/predict",
        "/models/%2e%2e/predict",
        "/models/iris%00/predict",
        "/v2/models/..%2F..%2Fetc/infer",
        "/v2/models/iris/versions/..%2F1/infer",
        "/v2/models/iris/versions/%C2%B9/infer",
        "/models/iris/versions/..%2F1/predict",
    ],
)
def test_path_traversal_and_odd_names_are_not_found(hostile_client: TestClient, path: str) -> None:
    response = hostile_client.post(path, content=orjson.dumps(IRIS_ROW))
    assert response.status_code in (404, 422), response.text
    assert "etc" not in response.text or "not served" in response.text


def test_control_characters_in_a_category_are_refused_and_not_echoed_raw(hostile_client: TestClient) -> None:
    row = {**SHIPPING_ROW, "origin": "north\x00\x1b[31m"}
    response = hostile_client.post("/models/shipping/predict", json=row)
    assert response.status_code == 422
    assert "\x1b" not in response.text and "\x00" not in response.text  # escaped, never raw


def test_duplicate_keys_take_the_last_value_which_is_validated(hostile_client: TestClient) -> None:
    body = b'{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, '
    body += b'"petal_width": "x"}'
    response = hostile_client.post("/models/iris/predict", content=body)
    assert response.status_code == 422 and "petal_width" in response.text
