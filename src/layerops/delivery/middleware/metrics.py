"""Counts in-flight requests and records every HTTP request's route, model, version, status, time."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from layerops.delivery.metrics import UNMATCHED_ROUTE, Metrics
from layerops.delivery.middleware._scope import request_state, route_template


class MetricsMiddleware:
    """Count in-flight requests and record every HTTP request's route, model, version, status, duration."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = request_state(scope)  # created here so handlers and this middleware share it
        status = 500  # if the app raises before answering, the server's error handler sends 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.in_flight.inc()
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_observed)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.observe_request(
                str(state.get("model") or ""),
                str(state.get("model_version") or ""),
                str(state.get("model_variant") or ""),
                route_template(scope) or UNMATCHED_ROUTE,
                status,
                time.perf_counter() - start,
            )
