"""The native REST routes: list models, model metadata, predict (current or explicit version)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from layerops.delivery.feeds import Feeds
from layerops.delivery.http_errors import Transport, parse_json
from layerops.delivery.middleware import request_state
from layerops.delivery.models import ServedModel
from layerops.delivery.responses import MODEL_ROUTE, PREDICT_ROUTE, error_responses
from layerops.delivery.service import InferenceRequest, InferenceService, label

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
    """`mark` on the request's state dict (what `request.state` reads and writes).

    The variant is the traffic variant the service routed the request to (`infer` labels the
    state), else the alias or version the model is served by.
    """
    label(state, model, state.get("model_variant"))
    return {
        "X-Model-Name": model.name,
        "X-Model-Version": state["model_version"],
        "X-Model-Variant": state["model_variant"],
    }


async def predict_body(
    service: InferenceService,
    state: dict[str, Any],
    name: str,
    version: int | None,
    body: bytes,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> Response:
    """The native predict answer for a raw body: one JSON object or a list of objects.

    Shared by the versioned route and `routes/predict.py`, which answers the current version's
    path. Domain errors propagate (the caller renders them).
    """

    def decode(model: ServedModel) -> Feeds:
        return model.validator.row_feeds(parse_json(body))

    request = InferenceRequest(
        name,
        decode,
        version,
        size=len(body),
        request_id=state.get("request_id"),
        headers=headers,
        json_body=body,
        state=state,
    )
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

    @router.get("/models/{name}", summary="A model's metadata, input schema and live traffic policy")
    async def model_metadata(name: str) -> Response:
        body = describe(service.model(name))
        body["traffic"] = None if service.router is None else service.router.describe(name)
        return json_response(body)

    async def _predict(request: Request, name: str, version: int | None) -> Response:
        body = await request.body()
        state = request_state(request.scope)
        return await predict_body(service, state, name, version, body, request.scope["headers"])

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
