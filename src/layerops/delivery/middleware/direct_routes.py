"""Raw ASGI routes answered before FastAPI's per-request wrappers, which only its handlers need.

Inside the user middleware, FastAPI runs every request through Starlette's exception middleware
(it builds a `Request` for the exception handlers), an `AsyncExitStack` (for files and `yield`
dependencies) and its router (telemetry, form limits, scope updates) before a route is matched.
A raw ASGI endpoint (`routes/predict.py`) needs none of them: it renders its own errors and opens
nothing. This innermost middleware matches such routes first and calls the route's own handler;
everything else, and a path matched with the wrong method (the router's 405), passes on. The same
`Route` objects stay in the app's router too, so `url_path_for` and 405 answers work unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send


class DirectRoutesMiddleware:
    """Call the first of `routes` that fully matches an HTTP request; otherwise the inner app."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[Route]) -> None:
        self.app = app
        self.routes = tuple(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self.routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child_scope)
                    await route.handle(scope, receive, send)
                    return
        await self.app(scope, receive, send)
