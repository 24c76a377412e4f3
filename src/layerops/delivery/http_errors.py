"""The one place where errors become HTTP responses: class → status table and the error body.

Every error response has the body `{"error": {"type", "message", "details"?}}`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from layerops.delivery.engines import EngineError
from layerops.errors import (
    BundleError,
    InputError,
    LayeropsError,
    ModelNotReadyError,
    NotFoundError,
    OverloadedError,
    RepositoryUnavailableError,
)


class MalformedBodyError(LayeropsError):
    """The request body is not valid JSON (or not the JSON shape the route takes)."""


_TABLE: list[tuple[type[LayeropsError], int, str]] = [
    (MalformedBodyError, 400, "malformed_body"),
    (InputError, 422, "invalid_input"),
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


def error_response(
    status: int,
    kind: str,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A JSON error response with the standard body."""
    error: dict[str, Any] = {"type": kind, "message": message}
    if details:
        error["details"] = details
    return Response(
        orjson.dumps({"error": error}), status_code=status, media_type="application/json", headers=headers
    )


def domain_error_response(exc: LayeropsError) -> Response:
    """The standard error response of a domain error (503s carry `Retry-After`)."""
    status, kind = status_of(exc)
    details = exc.problems if isinstance(exc, InputError) else None
    headers = {"Retry-After": "1"} if status == 503 else None
    return error_response(status, kind, str(exc), details, headers)


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
    formatter: Callable[[LayeropsError], Response],
) -> Callable[[Callable[P, Awaitable[Response]]], Callable[P, Awaitable[Response]]]:
    """Decorate a handler so its domain errors get a protocol's own error body (V2, MLflow)."""

    def decorate(handler: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
        @functools.wraps(handler)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
            try:
                return await handler(*args, **kwargs)
            except LayeropsError as exc:
                return formatter(exc)

        return wrapper

    return decorate


def install_error_handlers(app: FastAPI) -> None:
    """Map domain errors, FastAPI validation errors and HTTP exceptions to the standard body."""

    async def domain(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LayeropsError)
        return domain_error_response(exc)

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
        return error_response(422, "invalid_input", f"{first['field']}: {first['message']}", details)

    async def http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, kind, str(exc.detail), headers=dict(exc.headers or {}))

    app.add_exception_handler(LayeropsError, domain)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http)
