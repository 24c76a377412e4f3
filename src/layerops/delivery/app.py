"""The app factory: `create_app(settings, repository)` wires registry, service, routes, middleware.

Initiating phase (lifespan start): resolve the configured names/aliases, load and warm each
model, fail fast when one cannot load (unless `start_degraded`). Running phase: the routes.
Nothing here is global: each app owns its registry, service and Prometheus registry.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Match
from starlette.types import Scope

from layerops import __version__
from layerops.delivery.auth import key_store
from layerops.delivery.fast_lane import PredictFastLane
from layerops.delivery.http_errors import Transport, install_error_handlers
from layerops.delivery.metrics import Metrics
from layerops.delivery.middleware import (
    AccessLogMiddleware,
    ApiKeyMiddleware,
    BodySizeLimitMiddleware,
    ErrorBoundaryMiddleware,
    MetricsMiddleware,
    RequestIdMiddleware,
    TimeoutMiddleware,
)
from layerops.delivery.models import ModelLoader, ModelRegistry, ServedModel
from layerops.delivery.reload import Reloader
from layerops.delivery.responses import ALWAYS, error_responses
from layerops.delivery.routes import health, native, v2
from layerops.delivery.routes import mlflow as mlflow_scoring
from layerops.delivery.service import InferenceService, Prediction
from layerops.delivery.settings import ServeSettings
from layerops.errors import LayeropsError
from layerops.repository.api import ModelRepository

log = logging.getLogger("layerops.delivery")

PUBLIC_PATHS = frozenset(
    {"/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready", "/ping", "/health"}
)
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
ADMIN_PREFIXES = ("/admin/",)


def settle_heap() -> None:
    """Collect once, then freeze what survives (loaded models, imported libraries).

    A served process holds millions of long-lived objects (model graphs, mlflow, pandas). Left in
    the collector's oldest generation, each full collection walks all of them: measured 40-210 ms
    pauses every few seconds under load, which became the p99 of every request in flight. Frozen
    objects are skipped by the collector; requests' short-lived garbage is still collected.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _return_free_memory()


def _return_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them after a model load's temporaries).

    Measured ~30 MiB per worker after loading a 100-tree forest. A no-op where there is no glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def create_app(settings: ServeSettings, repository: ModelRepository) -> FastAPI:
    """A ready-to-run ASGI app serving the models `settings` names from `repository`."""
    keys, anonymous = key_store(settings)
    # A retired version's series stay until its last requests have surely finished and been scraped.
    metrics = Metrics(retire_after_seconds=max(60.0, 2 * settings.request_timeout_seconds))
    loader = ModelLoader(repository, settings)
    refs = settings.model_refs()
    registry = ModelRegistry(refs or loader.discover(), pinned_cache=settings.pinned_cache_size)
    if not registry.refs:
        raise LayeropsError(
            "no models to serve: none has a 'production' alias; promote one or pass --model NAME@ALIAS"
        )

    def observe(prediction: Prediction) -> None:
        model = prediction.model
        if prediction.classes:
            metrics.observe_classes(model.name, str(model.version), prediction.labels())
        else:
            metrics.observe_values(model.name, str(model.version), prediction.values())

    def observe_batch(model: ServedModel, rows: int, waits: Sequence[float]) -> None:
        metrics.observe_batch(model.name, str(model.version), rows, waits)

    service = InferenceService(
        registry,
        loader,
        threads=settings.inference_threads,
        observer=observe,
        policy=settings.batching_for,
        on_batch=observe_batch,
    )

    def on_swap(new: ServedModel, old: ServedModel | None) -> None:
        metrics.observe_load(new.name, str(new.version), new.load_seconds)
        metrics.set_model_info(new.name, str(new.version), new.ref, new.engine.name)
        if old is not None:
            service.retire(old)  # requests queued on the old version finish on it
            metrics.observe_reload(new.name, "success")
            route = documented.get(new.name)
            if route is not None:  # the new version may take other inputs: document them
                for attribute, value in native.documented_predict(new).items():
                    setattr(route, attribute, value)
            app.openapi_schema = None
            settle_heap()  # once per reload: the old version's objects go, the new one's freeze

    def on_failure(name: str, reason: str) -> None:
        metrics.observe_reload(name, "failure")

    reloader = Reloader(registry, loader, on_swap=on_swap, on_failure=on_failure)
    documented: dict[str, Any] = {}  # model name → its documented predict route

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not registry.ready():  # a caller may have run the initiating phase already (preflight)
            await anyio.to_thread.run_sync(lambda: reloader.load_all(degraded=settings.start_degraded))
        for model in registry.models():
            documented[model.name] = native.add_documented_predict_route(app.router, service, model)
            if model.engine_note:
                log.warning(
                    "%s v%s serves with the native engine: %s", model.name, model.version, model.engine_note
                )
        settle_heap()
        async with anyio.create_task_group() as group:
            if settings.reload_interval_seconds > 0:
                group.start_soon(reloader.poll, settings.reload_interval_seconds)
            yield
            group.cancel_scope.cancel()
        service.close()

    app = FastAPI(
        title="layerops",
        version=__version__,
        description="Models served from the layerops repository.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    native_router = native.build_router(service)
    app.include_router(native_router)
    app.include_router(v2.build_router(service))
    app.include_router(mlflow_scoring.build_router(service))
    app.include_router(health.build_router(registry, reloader))

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics",
        responses=error_responses(Transport.NATIVE, *ALWAYS),
        response_class=PlainTextResponse,  # the text exposition format
    )
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    def routable(scope: Scope) -> bool:  # read at call time: reloads add documented routes
        return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)

    # Added innermost first: a request passes metrics → request id → access log → error
    # boundary → auth → body limit → timeout → the predict fast lane (its own path only) → routes.
    predict_route = next(r for r in native_router.routes if getattr(r, "path", None) == native.PREDICT_PATH)
    app.add_middleware(PredictFastLane, service=service, route=predict_route)
    app.add_middleware(
        TimeoutMiddleware, default_seconds=settings.request_timeout_seconds, per_model=settings.model_timeouts
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        ApiKeyMiddleware,
        keys=keys,
        public_paths=PUBLIC_PATHS | (DOCS_PATHS if settings.docs_public else frozenset()),
        admin_prefixes=ADMIN_PREFIXES,
        metrics_public=settings.metrics_public,
        anonymous=anonymous,
        routable=routable,
    )
    app.add_middleware(ErrorBoundaryMiddleware)
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    app.state.registry = registry
    app.state.service = service
    app.state.reloader = reloader
    app.state.metrics = metrics
    return app
