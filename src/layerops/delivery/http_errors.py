"""The one place where errors become HTTP responses: class → status table and the error body.

Every error response has the body `{"error": {"type", "message", "details"?}}`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any, ParamSpec

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Scope

from layerops.delivery.engines import EngineError
from layerops.errors import (
    BundleError,
    InputError,
    LayeropsError,
    ModelNotReadyError,
    NotFoundError,
    OverloadedError,
    PolicyError,
    RepositoryUnavailableError,
)

log = logging.getLogger("layerops.delivery")


class MalformedBodyError(LayeropsError):
    """The request body is not valid JSON (or not the JSON shape the route takes)."""


class UnsupportedMediaTypeError(MalformedBodyError):
    """The body is of a media type the route does not take (415)."""


_TABLE: list[tuple[type[LayeropsError], int, str]] = [
    (UnsupportedMediaTypeError, 415, "unsupported_media_type"),
    (MalformedBodyError, 400, "malformed_body"),
    (InputError, 422, "invalid_input"),
    (PolicyError, 422, "invalid_policy"),
    (NotFoundError, 404, "not_found"),
    (ModelNotReadyError, 503, "model_not_ready"),
    (OverloadedError, 503, "overloaded"),
    (RepositoryUnavailableError, 503, "repository_unavailable"),
    (BundleError, 500, "model_error"),
    (EngineError, 500, "engine_error"),
    (LayeropsError, 400, "bad_request"),
]


def status_of(exc: LayeropsError) -> tuple[int, str]:
    """HTTP status and error type of a domain error (the first matching class wins)."""
    for cls, status, kind in _TABLE:
        if isinstance(exc, cls):
            return status, kind
    return 500, "internal_error"  # unreachable: LayeropsError is the last row


class Transport(StrEnum):
    """The protocol a path belongs to; each speaks its own error body."""

    NATIVE = "native"
    """`{"error": {"type", "message", "details"?}}`"""
    V2 = "v2"
    """The Open Inference Protocol's `{"error": "<message>"}`."""
    MLFLOW = "mlflow"
    """MLflow's scoring server's `{"error_code", "message"}`."""


MLFLOW_PATHS = frozenset({"/invocations", "/ping", "/health", "/version"})
"""The paths of MLflow's scoring protocol."""

# MLflow's error codes (databricks_pb2.ErrorCode) by status.
_MLFLOW_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    405: "ENDPOINT_NOT_FOUND",
    413: "REQUEST_LIMIT_EXCEEDED",
    415: "BAD_REQUEST",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def transport_of(path: str) -> Transport:
    """The protocol of a request path (relative to the app): `/v2...`, MLflow's paths, or native."""
    if path == "/v2" or path.startswith("/v2/"):
        return Transport.V2
    if path in MLFLOW_PATHS:
        return Transport.MLFLOW
    return Transport.NATIVE


def error_response(
    status: int,
    kind: str,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
    *,
    transport: Transport = Transport.NATIVE,
) -> Response:
    """A JSON error response in `transport`'s error body.

    V2 and MLflow answer invalid input with 400 (their protocols have no 422); 503s carry
    `Retry-After` in every protocol.
    """
    body: dict[str, Any]
    if transport is Transport.NATIVE:
        error: dict[str, Any] = {"type": kind, "message": message}
        if details:
            error["details"] = details
        body = {"error": error}
    else:
        status = 400 if status == 422 else status
        if transport is Transport.V2:
            body = {"error": message}
        else:
            body = {"error_code": _MLFLOW_CODES.get(status, "INTERNAL_ERROR"), "message": message}
    if status == 503:
        headers = {"Retry-After": "1", **(headers or {})}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def scope_error_response(
    scope: Scope,
    status: int,
    kind: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """`error_response` in the error body of the protocol the request's path belongs to."""
    return error_response(status, kind, message, headers=headers, transport=transport_of(route_path(scope)))


def route_path(scope: Scope) -> str:
    """The request path relative to the app (`root_path` removed), without the query string."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path


def domain_error_response(
    exc: LayeropsError, transport: Transport = Transport.NATIVE, request_id: str | None = None
) -> Response:
    """The error response of a domain error.

    A server-side failure (5xx) has its paths redacted and names the request id, and is logged at
    ERROR with that id, so a client's 500 can be matched to the server's log.
    """
    status, kind = status_of(exc)
    details = exc.problems if isinstance(exc, InputError) else None
    message = str(exc)
    if status >= 500:
        message = redact_paths(message)
        if status == 500:
            log.error("request %s failed: %s", request_id or "-", exc)
            if request_id:
                message = f"{message}; quote request id {request_id} when reporting it"
    return error_response(status, kind, message, details, transport=transport)


def request_id_of(scope: Scope) -> str | None:
    """The request id the request id middleware gave this request, if any."""
    state = scope.get("state")
    value = state.get("request_id") if isinstance(state, dict) else None
    return value if isinstance(value, str) else None


_PATHS = re.compile(
    r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s'"<>]*"""  # URIs: file:///..., sqlite:///..., s3://bucket/...
    r"""|(?<![\w.~/])/(?:[^\s/'"<>:]+/)+[^\s/'"<>:,)]*"""  # absolute paths of two or more parts
    r"""|[A-Za-z]:\\[^\s'"<>]*"""  # Windows paths
)


def redact_paths(text: str) -> str:
    """`text` with file paths and URIs replaced by `<path>` (for what the public sees).

    Server-side failures (a bundle that cannot be read, a registry that cannot be reached) name
    files and storage locations; those stay in the server log and the admin view.
    """
    return _PATHS.sub("<path>", text)


def parse_json(body: bytes) -> Any:
    """The parsed request body; malformed JSON (and NaN/Infinity literals) raise `MalformedBodyError`."""
    if not body:
        raise MalformedBodyError("the request body is empty; send JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBodyError(f"malformed JSON: {exc}") from None


P = ParamSpec("P")


def answer_errors_with(
    transport: Transport,
) -> Callable[[Callable[P, Awaitable[Response]]], Callable[P, Awaitable[Response]]]:
    """Decorate a handler so its domain errors get a protocol's own error body (V2, MLflow).

    The exception handlers would give the same answer; answering here skips raising through the
    framework's exception middleware on the hot path.
    """

    def decorate(handler: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
        @functools.wraps(handler)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
            try:
                return await handler(*args, **kwargs)
            except LayeropsError as exc:
                request = next((a for a in (*args, *kwargs.values()) if isinstance(a, Request)), None)
                request_id = None if request is None else request_id_of(request.scope)
                return domain_error_response(exc, transport, request_id)

        return wrapper

    return decorate


def install_error_handlers(app: FastAPI) -> None:
    """Map domain errors, FastAPI validation errors and HTTP exceptions to the standard body."""

    async def domain(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LayeropsError)
        return domain_error_response(
            exc, transport_of(route_path(request.scope)), request_id_of(request.scope)
        )

    async def validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        details = [
            {
                "field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"),
                "message": err.get("msg", ""),
            }
            for err in exc.errors()
        ]
        first = details[0] if details else {"field": "", "message": "invalid request"}
        message = f"{first['field']}: {first['message']}"
        return error_response(
            422, "invalid_input", message, details, transport=transport_of(route_path(request.scope))
        )

    async def http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return scope_error_response(
            request.scope, exc.status_code, kind, str(exc.detail), headers=dict(exc.headers or {})
        )

    app.add_exception_handler(LayeropsError, domain)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http)
