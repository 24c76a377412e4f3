"""`POST /models/{name}/predict`, the hottest route, as a raw ASGI endpoint of a Starlette `Route`.

The innermost middleware (`middleware/direct_routes.py`) matches the path and hands over
`path_params`; the endpoint reads the body and calls the function every native predict route
shares (`native.predict_body`). What it does without is the framework's per-request machinery
around a handler: building a `Request`, the exception middleware's wrapping, the exit stack,
the router's bookkeeping, solving dependencies. Measured in process at 16 concurrent requests,
that machinery cost more than validating the row and running a 100-tree forest on ONNX Runtime.
Every layerops middleware applies to it as to any route; its OpenAPI operation (one per served
model, with that model's typed schema) comes from `native.predict_operation`.
"""

from __future__ import annotations

from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from layerops.delivery.http_errors import domain_error_response
from layerops.delivery.middleware import request_state
from layerops.delivery.routes.native import PREDICT_PATH, predict_body
from layerops.delivery.service import InferenceService
from layerops.errors import LayeropsError


class PredictEndpoint:
    """The raw ASGI endpoint of `POST /models/{name}/predict`."""

    def __init__(self, service: InferenceService) -> None:
        self.service = service
        self.route: Route | None = None
        """The route serving this endpoint (its path template labels logs and metrics)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self.route
        body = await _read_body(receive)
        if body is None:
            return  # the client went away before sending its body
        state = request_state(scope)
        try:
            name = scope["path_params"]["name"]
            response = await predict_body(self.service, state, name, None, body, scope["headers"])
        except LayeropsError as exc:
            response = domain_error_response(exc, request_id=state.get("request_id"))
        await response(scope, receive, send)


def predict_route(service: InferenceService) -> Route:
    """The route of `POST /models/{name}/predict` over `service`."""
    endpoint = PredictEndpoint(service)
    route = Route(PREDICT_PATH, endpoint, methods=["POST"], include_in_schema=False)
    endpoint.route = route
    return route


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
