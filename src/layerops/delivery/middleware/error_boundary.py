"""The error boundary: an unexpected exception becomes one 500 for that request, never a traceback.

Starlette's own last resort answers `Internal Server Error` in plain text from outside every
layerops middleware, so the client gets no request id and no protocol error body. This
middleware sits inside the request id and access log: a failure is logged once at ERROR with
its traceback and request id (never the payload), and the client gets a 500 in its protocol's
error body naming the request id to quote. A response that has already started cannot be
replaced: then the connection is cut, as before.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from layerops.delivery.http_errors import scope_error_response
from layerops.delivery.middleware._scope import request_state

log = logging.getLogger("layerops.delivery")


class ErrorBoundaryMiddleware:
    """Answers 500 (with the request id) for an exception raised before the response started."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception:
            request_id = request_state(scope).get("request_id", "-")
            path = str(scope.get("path", ""))[:512]
            log.exception("request %s failed: %s %s", request_id, scope.get("method"), path)
            if started:
                raise
            message = f"internal error; quote request id {request_id} when reporting it"
            await scope_error_response(scope, 500, "internal_error", message)(scope, receive, send)
