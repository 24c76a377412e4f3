"""One JSON line per request at INFO: who, what, how long, which model; never a body, query or header."""

from __future__ import annotations

import logging
import time

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from layerops.delivery.middleware._scope import request_state, route_template

_MAX_LOGGED_PATH = 512


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
                "model_variant": state.get("model_variant"),
                "client": client[0] if client else None,
                "bytes_out": bytes_out,
            }
            self.logger.info(orjson.dumps(record, default=str).decode())
