"""API keys: 401 without a valid key, 403 for a user key on admin routes."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from layerops.delivery.auth import KeyStore, Role
from layerops.delivery.http_errors import route_path, scope_error_response
from layerops.delivery.middleware._scope import header, request_state

_MISSING_KEY = "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


def _presented_key(scope: Scope) -> bytes | None:
    authorization = header(scope, b"authorization")
    if authorization is not None and authorization[:7].lower() == b"bearer ":
        token = authorization[7:].strip()
        if token:
            return token
    api_key = header(scope, b"x-api-key")
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

    def __init__(  # noqa: PLR0913 - ASGI middleware: the app plus keyword options
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
