"""`POST /models/{name}/feedback`: ground truth for logged predictions, by request id."""

from __future__ import annotations

from functools import partial

import anyio.to_thread
from fastapi import APIRouter, Request
from starlette.responses import Response

from layerops.delivery.http_errors import MalformedBodyError, Transport, parse_json
from layerops.delivery.responses import PREDICT_ROUTE, error_responses
from layerops.delivery.routes.native import json_response
from layerops.delivery.service import InferenceService
from layerops.errors import NotFoundError
from layerops.monitoring.feedback import MAX_ITEMS, record_feedback
from layerops.monitoring.log import PredictionLog

FEEDBACK_ITEM = {
    "type": "object",
    "required": ["request_id", "label"],
    "properties": {
        "request_id": {"type": "string", "description": "The X-Request-ID of the predict call."},
        "row": {"type": "integer", "minimum": 0, "default": 0, "description": "The row within that request."},
        "label": {"description": "The true class (classification) or value (regression)."},
    },
    "additionalProperties": False,
}
_BODY = {"oneOf": [FEEDBACK_ITEM, {"type": "array", "items": FEEDBACK_ITEM, "minItems": 1}]}


def build_router(service: InferenceService, prediction_log: PredictionLog | None) -> APIRouter:
    """The feedback route over the server's prediction log (404 when the log is off)."""
    router = APIRouter(tags=["monitoring"], responses=error_responses(Transport.NATIVE, *PREDICT_ROUTE))

    @router.post(
        "/models/{name}/feedback",
        summary="Ground truth for logged predictions (one item or a list)",
        description=(
            "Each item names a logged prediction by its request id (the `X-Request-ID` of the "
            "predict response) and its row, with the true label. Valid items are stored even when "
            "others are refused; the answer is 200 when all were stored, else 422 listing each "
            "refused item and why."
        ),
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _BODY}}}},
    )
    async def feedback(name: str, request: Request) -> Response:
        model = service.model(name)
        if prediction_log is None:
            raise NotFoundError("the prediction log is off on this server, so feedback cannot be matched")
        body = parse_json(await request.body())
        items = body if isinstance(body, list) else [body]
        if not items:
            raise MalformedBodyError("send one feedback object or a non-empty list of them")
        if len(items) > MAX_ITEMS:
            raise MalformedBodyError(f"at most {MAX_ITEMS:,} feedback items per request, got {len(items):,}")
        # Predictions answered a moment ago may still be queued: write them before looking them up.
        await anyio.to_thread.run_sync(partial(prediction_log.flush, timeout=2.0, readable=False))
        result = await anyio.to_thread.run_sync(
            partial(record_feedback, prediction_log.store, model.metadata, items)
        )
        if service.router is not None:  # a canary compares the quality of its variants on these
            refused_items = {rejected.index for rejected in result.rejected}
            service.router.remember_labels(
                name,
                {
                    str(item["request_id"]): item["label"]
                    for index, item in enumerate(items)
                    if index not in refused_items and isinstance(item, dict) and item.get("row", 0) == 0
                },
            )
        body_out = result.as_dict()
        if not result.rejected:
            return json_response(body_out)
        refused = len(result.rejected)
        body_out["error"] = {
            "type": "invalid_feedback",
            "message": f"{refused} of {len(items)} feedback item(s) refused; {result.stored} stored",
        }
        return json_response(body_out, status=422)

    return router
