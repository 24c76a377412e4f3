"""Pure ASGI middleware of the server: request id, access log, body limit, API keys, timeout.

Each class takes the inner `app` plus keyword options and passes non-HTTP scopes (lifespan,
websocket) straight through. They only alter requests and responses; their own answers use the
standard error body of `http_errors.error_response`. Order, outermost first: metrics → request
id → access log → API key → body limit → timeout → routes (so every response, including one
made here, carries `X-Request-ID`, is logged and is counted).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from layerops.delivery.http_errors import route_path, scope_error_response
from layerops.errors import LayeropsError
from layerops.numbers import parse_natural

_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_MAX_LOGGED_PATH = 512
_MISSING_KEY = "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


def request_state(scope: Scope) -> dict[str, Any]:
    """The request's `state` dict (what `request.state` reads and writes), created if missing."""
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


def route_template(scope: Scope) -> str | None:
    """The matched route's path template (e.g. `/models/{name}/predict`), or None before/without a match."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else None


def model_from_path(path: str) -> str | None:
    """The model named by `/models/{name}/...` or `/v2/models/{name}/...`; None for other paths."""
    parts = path.split("/")
    if len(parts) > 2 and parts[1] == "models":
        return parts[2] or None
    if len(parts) > 3 and parts[1] == "v2" and parts[2] == "models":
        return parts[3] or None
    return None


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


class RequestIdMiddleware:
    """Give every request an id (a sane incoming `X-Request-ID` or a fresh one) and echo it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        raw = incoming if incoming and _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex.encode()
        request_state(scope)["request_id"] = raw.decode("ascii")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", raw)]}
            await send(message)

        await self.app(scope, receive, send_with_id)


class AccessLogMiddleware:
    """One JSON line per request at INFO (who, what, how long, which model); no body, query or header."""

    def __init__(self, app: ASGIApp, *, logger_name: str = "layerops.access") -> None:
        self.app = app
        self.logger = logging.getLogger(logger_name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        state = request_state(scope)
        status: int | None = None
        bytes_out = 0

        async def send_logged(message: Message) -> None:
            nonlocal status, bytes_out
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                bytes_out += len(message.get("body", b""))
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_logged)
        except Exception:
            status = status or 500  # the server's error handler answers 500 outside this middleware
            raise
        finally:
            client = scope.get("client")
            record = {
                "method": scope.get("method"),
                "path": scope["path"][:_MAX_LOGGED_PATH],
                "route": route_template(scope),
                "status": status,
                "duration_ms": round((time.perf_counter() - start) * 1000, 3),
                "request_id": state.get("request_id"),
                "model": state.get("model"),
                "model_version": state.get("model_version"),
                "client": client[0] if client else None,
                "bytes_out": bytes_out,
            }
            self.logger.info(orjson.dumps(record, default=str).decode())


class _BodyTooLarge(Exception):
    """Raised into the app by the wrapped `receive` once the body passes the limit."""


class BodySizeLimitMiddleware:
    """413 when the declared or streamed request body exceeds `max_bytes`."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        length = parse_natural(declared.strip()) if declared is not None else None
        if length is not None and length > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        received = 0
        started = False
        cut_off = False

        async def send_checked(message: Message) -> None:
            nonlocal started
            if cut_off:
                return  # the client has its 413 (or a cut connection); drop the app's late answer
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        async def receive_counted() -> Message:
            nonlocal received, cut_off
            if cut_off:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if not started:
                        await self._too_large(scope, receive, send)
                    cut_off = True
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, receive_counted, send_checked)
        except Exception:
            # Frameworks may wrap `_BodyTooLarge` (FastAPI turns body errors into a 400), so
            # anything raised after the cut-off is a consequence of it, already answered.
            if not cut_off:
                raise

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"the request body exceeds the limit of {self.max_bytes} bytes"
        response = scope_error_response(
            scope, 413, "payload_too_large", message, headers={"Connection": "close"}
        )
        await response(scope, receive, send)


class Role(StrEnum):
    """What a valid API key may do."""

    USER = "user"
    ADMIN = "admin"


class KeyStore:
    """SHA-256 digests of user and admin API keys; a presented key is checked in constant time."""

    def __init__(self, user_digests: Iterable[str] = (), admin_digests: Iterable[str] = ()) -> None:
        self._user = tuple(dict.fromkeys(_checked_digest(d).encode("ascii") for d in user_digests))
        self._admin = tuple(dict.fromkeys(_checked_digest(d).encode("ascii") for d in admin_digests))

    @staticmethod
    def hash_key(key: str | bytes) -> str:
        """The SHA-256 hex digest under which a key is stored (what a key file holds)."""
        return hashlib.sha256(key.encode("utf-8") if isinstance(key, str) else key).hexdigest()

    @classmethod
    def from_sources(
        cls,
        keys: Sequence[str] = (),
        key_file: Path | None = None,
        admin_keys: Sequence[str] = (),
        admin_key_file: Path | None = None,
    ) -> KeyStore:
        """Plain keys (hashed here) plus key files of digests; a malformed file line is a `LayeropsError`."""
        users = [cls.hash_key(k) for k in keys if k]
        admins = [cls.hash_key(k) for k in admin_keys if k]
        if key_file is not None:
            users += _read_key_file(key_file)
        if admin_key_file is not None:
            admins += _read_key_file(admin_key_file)
        return cls(users, admins)

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (an empty store lets no request in that needs a key)."""
        return bool(self._user or self._admin)

    def check(self, key: str | bytes) -> Role | None:
        """The role of `key`, or None; every stored digest is compared, whichever matches."""
        presented = self.hash_key(key).encode("ascii")
        is_user = False
        is_admin = False
        for digest in self._user:
            is_user |= hmac.compare_digest(presented, digest)
        for digest in self._admin:
            is_admin |= hmac.compare_digest(presented, digest)
        if is_admin:
            return Role.ADMIN
        return Role.USER if is_user else None

    def __repr__(self) -> str:
        return f"KeyStore(user_keys={len(self._user)}, admin_keys={len(self._admin)})"


def _checked_digest(digest: str) -> str:
    if not _DIGEST.fullmatch(digest):
        raise ValueError("an API key digest must be 64 hexadecimal characters (SHA-256)")
    return digest.lower()


def _read_key_file(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LayeropsError(f"cannot read API key file {path}: {type(exc).__name__}") from None
    digests = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if not _DIGEST.fullmatch(text):
            # Never echo the line: it may be a plain key pasted by mistake.
            raise LayeropsError(
                f"{path}:{number}: expected a SHA-256 hex digest (64 hex characters) per line; "
                "hash keys with `layerops keys hash`"
            )
        digests.append(text.lower())
    return digests


def _presented_key(scope: Scope) -> bytes | None:
    authorization = _header(scope, b"authorization")
    if authorization is not None and authorization[:7].lower() == b"bearer ":
        token = authorization[7:].strip()
        if token:
            return token
    api_key = _header(scope, b"x-api-key")
    if api_key is None or not api_key.strip():
        return None
    return api_key.strip()


class ApiKeyMiddleware:
    """401 without a valid key, 403 for a user key on admin paths; sets `state.auth_role`.

    Authentication is off only when `anonymous` says so (the server's explicit no-auth mode); an
    empty key store without it refuses every request that needs a key. A request that matches no
    route (`routable` says so) goes on to the router for its 404/405 instead: nothing would run,
    so there is nothing to protect, and `TRACE /admin/reload` is a 405 whatever the key.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: KeyStore,
        public_paths: frozenset[str],
        admin_prefixes: tuple[str, ...],
        metrics_public: bool,
        metrics_path: str = "/metrics",
        anonymous: bool = False,
        routable: Callable[[Scope], bool] | None = None,
    ) -> None:
        if anonymous and keys.enabled:
            raise ValueError("anonymous access and API keys exclude each other")
        self.app = app
        self.keys = keys
        self.anonymous = anonymous
        self.routable = routable
        self.open_paths = (public_paths | {metrics_path}) if metrics_public else public_paths
        self.admin_prefixes = tuple(p.rstrip("/") for p in admin_prefixes)

    def is_admin_path(self, path: str) -> bool:
        """Whether `path` is or lies under an admin prefix (`/admin`, `/admin/x`; not `/administer`)."""
        return any(path == p or path.startswith(p + "/") for p in self.admin_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.anonymous:
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if path in self.open_paths:
            await self.app(scope, receive, send)
            return
        presented = _presented_key(scope)
        role = self.keys.check(presented) if presented is not None else None
        refused = role is None or (role is Role.USER and self.is_admin_path(path))
        if refused and self.routable is not None and not self.routable(scope):
            await self.app(scope, receive, send)  # the router answers 404 or 405
            return
        if role is None:
            message = _MISSING_KEY if presented is None else "invalid API key"
            response = scope_error_response(
                scope, 401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send)
            return
        if refused:
            response = scope_error_response(scope, 403, "forbidden", "this API key may not call admin routes")
            await response(scope, receive, send)
            return
        request_state(scope)["auth_role"] = role.value
        await self.app(scope, receive, send)


class TimeoutMiddleware:
    """504 when a request has not started its response within its model's timeout.

    The model is read from the path (`/models/{name}/...`, `/v2/models/{name}/...`); other paths
    (e.g. `/invocations`) get `default_seconds`. A response that has started is never cut off
    mid-body. Cancellation reaches only async code: sync inference runs in a bounded thread pool
    elsewhere, so a timed-out request frees its connection but not its worker thread; the pool
    bound keeps the total bounded.
    """

    def __init__(
        self, app: ASGIApp, *, default_seconds: float, per_model: dict[str, float] | None = None
    ) -> None:
        per_model = dict(per_model or {})
        for name, seconds in [("default", default_seconds), *per_model.items()]:
            if not seconds > 0:
                raise ValueError(f"timeout for {name} must be > 0 seconds, got {seconds}")
        self.app = app
        self.default_seconds = default_seconds
        self.per_model = per_model

    def seconds_for(self, path: str) -> float:
        """The timeout of a request to `path`."""
        model = model_from_path(path)
        return self.per_model.get(model, self.default_seconds) if model else self.default_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seconds = self.seconds_for(route_path(scope))
        deadline = asyncio.timeout(seconds)
        started = False

        async def send_in_time(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not deadline.expired():
                    deadline.reschedule(None)  # let a started response finish
            await send(message)

        try:
            async with deadline:
                await self.app(scope, receive, send_in_time)
        except TimeoutError:
            if started or not deadline.expired():
                raise  # the app's own TimeoutError, or one we cannot answer any more
            message = f"the request did not complete within {seconds:g} s"
            await scope_error_response(scope, 504, "timeout", message)(scope, receive, send)
