"""Liveness, readiness and the admin reload route."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter
from starlette.responses import Response

from layerops.delivery.http_errors import Transport, redact_paths
from layerops.delivery.models import ModelRegistry
from layerops.delivery.reload import Reloader
from layerops.delivery.responses import error_responses
from layerops.delivery.routes.native import json_response


def build_router(registry: ModelRegistry, reloader: Reloader) -> APIRouter:
    """`/health/live`, `/health/ready`, `GET /admin/status` and `POST /admin/reload`."""
    router = APIRouter(responses=error_responses(Transport.NATIVE, 500, 504))

    @router.get("/health/live", tags=["health"], summary="The process is up")
    async def live() -> Response:
        return json_response({"status": "alive"})

    def status(*, public: bool) -> tuple[dict[str, Any], int]:
        loaded = {m.name: {"version": m.version, "engine": m.engine.name} for m in registry.models()}
        failures = dict(registry.failures)
        body = {
            "status": "ready" if registry.ready() else "not_ready",
            "models": loaded,
            "failures": {k: redact_paths(v) for k, v in failures.items()} if public else failures,
        }
        return body, 200 if registry.ready() else 503

    @router.get("/health/ready", tags=["health"], summary="Every configured model is loaded")
    async def ready() -> Response:
        body, code = status(public=True)  # public: file paths and storage URIs are redacted
        return json_response(body, status=code)

    admin = error_responses(Transport.NATIVE, 401, 403)

    @router.get(
        "/admin/status", tags=["admin"], summary="Readiness with the full failure reasons", responses=admin
    )
    async def admin_status() -> Response:
        body, _ = status(public=False)
        return json_response(body)

    @router.post(
        "/admin/reload", tags=["admin"], summary="Check aliases now and swap in new versions", responses=admin
    )
    async def reload() -> Response:
        outcomes = await anyio.to_thread.run_sync(reloader.reload)
        return json_response({"outcomes": [o.__dict__ for o in outcomes]})

    return router
