"""The native REST routes: list models, model metadata, predict (current or explicit version)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from layerops.delivery.feeds import Feeds
from layerops.delivery.http_errors import Transport, parse_json
from layerops.delivery.middleware import request_state
from layerops.delivery.models import ServedModel
from layerops.delivery.responses import MODEL_ROUTE, PREDICT_ROUTE, error_responses
from layerops.delivery.service import InferenceRequest, InferenceService

PREDICT_PATH = "/models/{name}/predict"
"""The native predict route of a model's served version (`routes/predict.py`)."""


def json_response(body: Any, *, headers: dict[str, str] | None = None, status: int = 200) -> Response:
    """A JSON response serialised with orjson (numpy scalars and arrays included)."""
    payload = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(payload, status_code=status, media_type="application/json", headers=headers)


def mark(request: Request, model: ServedModel) -> dict[str, str]:
    """Label the request with the model that answered (for logs and metrics); return headers."""
    return mark_state(request_state(request.scope), model)


def mark_state(state: dict[str, Any], model: ServedModel) -> dict[str, str]:
    """`mark` on the request's state dict (what `request.state` reads and writes)."""
    state["model"] = model.name
    state["model_version"] = str(model.version)
    return {"X-Model-Name": model.name, "X-Model-Version": str(model.version)}


async def predict_body(
    service: InferenceService, state: dict[str, Any], name: str, version: int | None, body: bytes
) -> Response:
    """The native predict answer for a raw body: one JSON object or a list of objects.

    Shared by the versioned route and `routes/predict.py`, which answers the current version's
    path. Domain errors propagate (the caller renders them).
    """

    def decode(model: ServedModel) -> Feeds:
        return model.validator.row_feeds(parse_json(body))

    request = InferenceRequest(name, decode, version, size=len(body), request_id=state.get("request_id"))
    prediction = (await service.infer(request)).prediction
    return json_response(prediction.as_dict(), headers=mark_state(state, prediction.model))


def describe(model: ServedModel) -> dict[str, Any]:
    """A served model's metadata: schema, classes, metrics, lineage, engine."""
    meta = model.metadata
    return {
        **model.summary(),
        "engine_note": model.engine_note,
        "target": meta.target,
        "classes": meta.classes,
        "inputs": [f.model_dump() for f in meta.features],
        "dropped_columns": meta.dropped_columns,
        "candidate": meta.candidate,
        "params": meta.params,
        "metrics": meta.metrics,
        "latency_at_training": meta.latency,
        "lineage": meta.lineage.model_dump(),
        "onnx": meta.onnx.model_dump(),
        "created_at": meta.created_at,
        "loaded_at": model.loaded_at.isoformat(timespec="seconds"),
    }


def build_router(service: InferenceService) -> APIRouter:
    """The native routes over `service`."""
    router = APIRouter(tags=["models"], responses=error_responses(Transport.NATIVE, *MODEL_ROUTE))

    @router.get("/models", summary="Every served model")
    async def list_models() -> Response:
        return json_response({"models": [m.summary() for m in service.registry.models()]})

    @router.get("/models/{name}", summary="A model's metadata and input schema")
    async def model_metadata(name: str) -> Response:
        return json_response(describe(service.model(name)))

    async def _predict(request: Request, name: str, version: int | None) -> Response:
        return await predict_body(service, request_state(request.scope), name, version, await request.body())

    @router.post(
        "/models/{name}/versions/{version}/predict",
        summary="Predict with an explicit version",
        responses=error_responses(Transport.NATIVE, *PREDICT_ROUTE),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": ["object", "array"]}}},
            }
        },
    )
    async def predict_version(name: str, version: int, request: Request) -> Response:
        return await _predict(request, name, version)

    return router


def predict_operation(model: ServedModel) -> dict[str, Any]:
    """The OpenAPI operation of `POST /models/<name>/predict` for `model`'s input schema."""
    row = model.validator.json_schema()
    schema = {"oneOf": [row, {"type": "array", "items": row, "minItems": 1}]}
    responses = {str(k): v for k, v in error_responses(Transport.NATIVE, *PREDICT_ROUTE).items()}
    return {
        "tags": ["models"],
        "summary": f"Predict with {model.name} ({model.metadata.task})",
        "operationId": f"predict_{model.name}",
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {
            "200": {"description": "Predictions", "content": {"application/json": {"schema": {}}}},
            **responses,
        },
    }
