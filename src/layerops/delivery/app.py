"""The app factory: `create_app(runtime)` puts the HTTP surface over a `ServingRuntime`.

Initiating phase (lifespan start): resolve the configured names/aliases, load and warm each
model, fail fast when one cannot load (unless `start_degraded`). Running phase: the routes.
Nothing here is global: each app serves its own runtime (registry, service, Prometheus registry).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Match, Route
from starlette.types import Scope

from layerops.delivery.http_errors import Transport, install_error_handlers
from layerops.delivery.middleware import (
    AccessLogMiddleware,
    ApiKeyMiddleware,
    BodySizeLimitMiddleware,
    DirectRoutesMiddleware,
    ErrorBoundaryMiddleware,
    MetricsMiddleware,
    RequestIdMiddleware,
    TimeoutMiddleware,
)
from layerops.delivery.models import ServedModel
from layerops.delivery.monitoring import DriftWatcher
from layerops.delivery.responses import ALWAYS, error_responses
from layerops.delivery.routes import feedback, health, native, traffic, v2
from layerops.delivery.routes import mlflow as mlflow_scoring
from layerops.delivery.routes.predict import predict_route
from layerops.delivery.runtime import ServingRuntime, settle_heap
from layerops.version import __version__

log = logging.getLogger("layerops.delivery")

PUBLIC_PATHS = frozenset(
    {"/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready", "/ping", "/health"}
)
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
ADMIN_PREFIXES = ("/admin/",)


def create_app(runtime: ServingRuntime) -> FastAPI:
    """A ready-to-run ASGI app over `runtime`: its routes, middleware and lifespan."""
    service = runtime.service
    app = FastAPI(
        title="layerops",
        version=__version__,
        description="Models served from the layerops repository.",
        lifespan=_lifespan(runtime),
    )
    _document_each_model(app, runtime)
    install_error_handlers(app)
    # The hottest path: matched first by the innermost middleware, and first in the router (405s).
    predict = predict_route(service)
    app.router.routes.insert(0, predict)
    for router in (
        native.build_router(service),
        v2.build_router(service),
        mlflow_scoring.build_router(service),
        feedback.build_router(service, runtime.prediction_log),
        traffic.build_router(runtime.releases),
    ):
        app.include_router(router)
    app.include_router(health.build_router(runtime.registry, runtime.reloader))
    app.add_api_route(
        "/metrics",
        _metrics_route(runtime),
        methods=["GET"],
        tags=["health"],
        summary="Prometheus metrics",
        responses=error_responses(Transport.NATIVE, *ALWAYS),
        response_class=PlainTextResponse,  # the text exposition format
    )
    _add_middleware(app, runtime, direct=[predict])
    app.state.runtime = runtime
    return app


def _lifespan(runtime: ServingRuntime) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The initiating phase (unless a caller ran it already: preflight), the alias poll while the
    app runs, and the service's close at the end."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(runtime.start)
        for model in runtime.registry.models():
            if model.engine_note:
                log.warning(
                    "%s v%s serves with the native engine: %s", model.name, model.version, model.engine_note
                )
        settle_heap()
        interval = runtime.settings.reload_interval_seconds
        async with anyio.create_task_group() as group:
            if interval > 0:
                group.start_soon(runtime.reloader.poll, interval)
            group.start_soon(_watch_releases, runtime)
            drift_every = runtime.settings.drift_interval_seconds
            if runtime.drift is not None and drift_every > 0:
                group.start_soon(_watch_drift, runtime.drift, drift_every)
            yield
            group.cancel_scope.cancel()
        # Queued log rows are written before the process exits (uvicorn runs this on SIGTERM).
        await anyio.to_thread.run_sync(runtime.close)

    return lifespan


async def _watch_drift(watcher: DriftWatcher, interval: float) -> None:
    """Check drift of every served model every `interval` seconds, off the event loop."""
    while True:
        await anyio.sleep(interval)
        try:
            await anyio.to_thread.run_sync(watcher.check_all)
        except Exception:  # a drift check must never take the server down
            log.exception("drift check failed")


async def _watch_releases(runtime: ServingRuntime) -> None:
    """Every `release_interval_seconds`: the traffic file if it changed, and a canary tick; every
    reload interval: policies stored by other processes and the variants' aliases."""
    settings = runtime.settings
    releases = runtime.releases
    refresh_every = settings.reload_interval_seconds or 30.0
    last_refresh = anyio.current_time()
    while True:
        await anyio.sleep(settings.release_interval_seconds)
        try:
            await anyio.to_thread.run_sync(releases.check_file)
            if anyio.current_time() - last_refresh >= refresh_every:
                last_refresh = anyio.current_time()
                await anyio.to_thread.run_sync(releases.check_stored)
                await anyio.to_thread.run_sync(runtime.router.refresh)
            await anyio.to_thread.run_sync(releases.tick)
        except Exception:  # a release check must never take the server down
            log.exception("release check failed")


def _metrics_route(runtime: ServingRuntime) -> Callable[[], Awaitable[Response]]:
    async def prometheus() -> Response:
        body, content_type = runtime.metrics.render()
        return Response(body, media_type=content_type)

    return prometheus


def _document_each_model(app: FastAPI, runtime: ServingRuntime) -> None:
    """`/openapi.json` lists `POST /models/<name>/predict` with each served model's input schema,
    built from the registry when the document is asked for (a reload only drops the cache)."""
    generic = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generic()
            for model in runtime.registry.models():
                schema["paths"][f"/models/{model.name}/predict"] = {"post": native.predict_operation(model)}
        return app.openapi_schema or {}

    def forget(_: ServedModel) -> None:
        app.openapi_schema = None

    app.openapi = openapi  # type: ignore[method-assign]
    runtime.swap_listeners.append(forget)


def _add_middleware(app: FastAPI, runtime: ServingRuntime, direct: list[Route]) -> None:
    """The middleware stack; a request passes metrics → request id → access log → error boundary →
    auth → body limit → timeout → the `direct` raw ASGI routes → FastAPI's routes."""
    settings = runtime.settings

    def routable(scope: Scope) -> bool:  # read at call time: reloads add documented routes
        return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)

    app.add_middleware(DirectRoutesMiddleware, routes=direct)  # innermost first
    app.add_middleware(
        TimeoutMiddleware, default_seconds=settings.request_timeout_seconds, per_model=settings.model_timeouts
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        ApiKeyMiddleware,
        keys=runtime.keys,
        public_paths=PUBLIC_PATHS | (DOCS_PATHS if settings.docs_public else frozenset()),
        admin_prefixes=ADMIN_PREFIXES,
        metrics_public=settings.metrics_public,
        anonymous=runtime.anonymous,
        routable=routable,
    )
    app.add_middleware(ErrorBoundaryMiddleware)
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=runtime.metrics)
