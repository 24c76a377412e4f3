"""The fast lane: `POST /models/{name}/predict` answered without the framework's router.

The hottest route of the server is answered here, inside every layerops middleware (metrics,
request id, access log, API key, body limit and timeout apply to it as to any route), by the very
function the framework route calls (`native.predict_body`). What it skips is the framework's
per-request machinery around that function: matching the path against every route, the
exception middleware, the exit stack, building a `Request` and solving dependencies. Measured
in process at 16 concurrent requests that machinery cost more than validating the row and
running a 100-tree forest on ONNX Runtime.

Anything else (other methods, other paths) goes on to the framework unchanged. The framework's
route object for the path is set as `scope["route"]`, so logs and metrics label the request
exactly as before. Unexpected exceptions propagate to the server's error middleware (500), as
they would from the route.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from layerops.delivery.http_errors import domain_error_response, route_path
from layerops.delivery.middleware import request_state
from layerops.delivery.routes.native import predict_body
from layerops.delivery.service import InferenceService
from layerops.errors import LayeropsError


class PredictFastLane:
    """Answers `POST /models/{name}/predict` directly; passes every other request to `app`."""

    def __init__(self, app: ASGIApp, *, service: InferenceService, route: Any) -> None:
        self.app = app
        self.service = service
        self.route = route
        """The framework's route for the path (its `path` template labels logs and metrics)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = self._model_name(scope)
        if name is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        body = await _read_body(receive)
        if body is None:
            return  # the client went away before sending its body
        state = request_state(scope)
        try:
            response = await predict_body(self.service, state, name, None, body)
        except LayeropsError as exc:
            response = domain_error_response(exc, request_id=state.get("request_id"))
        await response(scope, receive, send)

    @staticmethod
    def _model_name(scope: Scope) -> str | None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        parts = route_path(scope).split("/")
        if len(parts) == 4 and parts[0] == "" and parts[1] == "models" and parts[2] and parts[3] == "predict":
            return parts[2]
        return None


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client disconnected first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks) if len(chunks) > 1 else chunks[0]
