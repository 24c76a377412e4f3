"""The admin routes of traffic policies: read, set and remove a model's canary, A/B or shadow policy."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from layerops.delivery.http_errors import MalformedBodyError, Transport
from layerops.delivery.releases import ReleaseManager
from layerops.delivery.responses import error_responses
from layerops.delivery.routes.native import json_response
from layerops.errors import NotFoundError


def build_router(releases: ReleaseManager) -> APIRouter:
    """`GET /admin/traffic`, `PUT /admin/traffic/{name}` and `DELETE /admin/traffic/{name}` (admin key)."""
    router = APIRouter(tags=["admin"], responses=error_responses(Transport.NATIVE, 401, 403, 404))

    def _served(name: str) -> None:
        if name not in releases.router.registry.refs:
            served = ", ".join(sorted(releases.router.registry.refs)) or "none"
            raise NotFoundError(f"model '{name}' is not served here; served: {served}")

    @router.get("/admin/traffic", summary="Every live traffic policy with its variants and canary state")
    async def all_policies() -> Response:
        body: dict[str, Any] = {}
        for name in releases.router.routes():
            body[name] = releases.router.describe(name)
            state = releases.states.get(name)
            if state is not None:
                body[name]["canary"] = _state(state)
        return json_response({"models": body, "traffic_file": str(releases.traffic_file or "") or None})

    @router.put(
        "/admin/traffic/{name}",
        summary="Set a model's traffic policy (stored in the repository: every worker applies it)",
        responses=error_responses(Transport.NATIVE, 400, 422),
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
        },
    )
    async def put_policy(name: str, request: Request) -> Response:
        _served(name)
        try:
            data = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise MalformedBodyError(f"the body is not JSON: {exc}") from exc
        described = await anyio.to_thread.run_sync(releases.put, name, data)
        return json_response(described)

    @router.delete("/admin/traffic/{name}", summary="Remove a policy set with PUT (the file's applies again)")
    async def delete_policy(name: str) -> Response:
        _served(name)
        still = await anyio.to_thread.run_sync(releases.delete, name)
        return json_response({"model": name, "policy": releases.router.describe(name) if still else None})

    return router


def _state(state: Any) -> dict[str, Any]:
    return {
        "status": state.status,
        "candidate": state.candidate,
        "baseline": state.baseline,
        "step": state.step,
        "share": state.share,
        "since": state.since.isoformat(timespec="seconds"),
        "reason": state.reason,
    }
