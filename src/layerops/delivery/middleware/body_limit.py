"""413 when the declared or streamed request body exceeds the limit."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from layerops.delivery.http_errors import scope_error_response
from layerops.delivery.middleware._scope import header
from layerops.numbers import parse_natural


class _BodyTooLarge(Exception):
    """Raised into the app by the wrapped `receive` once the body passes the limit."""


class BodySizeLimitMiddleware:
    """413 when the declared or streamed request body exceeds `max_bytes`."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(  # noqa: C901 - the two closures share the cut-off state with the call
        self, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
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
