"""504 when a request has not started its response within its model's timeout."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from layerops.delivery.http_errors import route_path, scope_error_response
from layerops.delivery.middleware._scope import model_from_path


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
