"""Liveness, readiness and the admin reload route."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter
from starlette.responses import Response

from layerops.delivery.models import ModelRegistry
from layerops.delivery.reload import Reloader
from layerops.delivery.routes.native import json_response


def build_router(registry: ModelRegistry, reloader: Reloader) -> APIRouter:
    """`/health/live`, `/health/ready` and `POST /admin/reload`."""
    router = APIRouter()

    @router.get("/health/live", tags=["health"], summary="The process is up")
    async def live() -> Response:
        return json_response({"status": "alive"})

    @router.get("/health/ready", tags=["health"], summary="Every configured model is loaded")
    async def ready() -> Response:
        loaded = {m.name: {"version": m.version, "engine": m.engine.name} for m in registry.models()}
        body = {
            "status": "ready" if registry.ready() else "not_ready",
            "models": loaded,
            "failures": dict(registry.failures),
        }
        return json_response(body, status=200 if registry.ready() else 503)

    @router.post("/admin/reload", tags=["admin"], summary="Check aliases now and swap in new versions")
    async def reload() -> Response:
        outcomes = await anyio.to_thread.run_sync(reloader.reload)
        return json_response({"outcomes": [o.__dict__ for o in outcomes]})

    return router
