"""The Open Inference Protocol (KServe V2) REST routes (OIP `inference_rest.md`), over the service.

Tabular inputs: one tensor per feature ([N] or [N, 1]) or, for an all-numeric model, one [N, F]
tensor in schema order; data flat (row-major) or nested. Inputs may use Triton's binary tensor
data extension (`tritonclient.http`'s default); outputs are always JSON, which such clients read.
Errors: `{"error": "<message>"}` with 400 (bad request), 404 (unknown model/version), 503 (not ready).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from layerops.delivery.feeds import Feeds
from layerops.delivery.http_errors import (
    MalformedBodyError,
    Transport,
    answer_errors_with,
    request_id_of,
)
from layerops.delivery.middleware import request_state
from layerops.delivery.models import ServedModel
from layerops.delivery.responses import MODEL_ROUTE, error_responses
from layerops.delivery.routes.native import json_response, mark
from layerops.delivery.routes.v2_tensors import (
    BINARY_HEADER,
    DATATYPES,
    columns_of,
    read_inputs,
    split_body,
)
from layerops.delivery.service import INLINE_BYTES, InferenceRequest, InferenceService, Prediction
from layerops.errors import BundleError, InputError, NotFoundError
from layerops.numbers import parse_natural
from layerops.version import __version__

SERVER_NAME = "layerops"
"""The server name in the server metadata."""
EXTENSIONS = ["binary_tensor_data"]
"""Protocol extensions the server implements (Triton's binary tensor data, for inputs)."""
_FEATURE_DATATYPE = {"float": "FP64", "int": "INT64", "bool": "BOOL", "category": "BYTES"}
_PLATFORMS = {"onnx": "onnx_onnxv1", "native": "sklearn_skops"}


_v2_errors = answer_errors_with(Transport.V2)


def output_names(model: ServedModel) -> list[str]:
    """The output tensors a model produces."""
    return ["label", "probabilities"] if model.metadata.task == "classification" else ["prediction"]


def requested_outputs(request: dict[str, Any], model: ServedModel) -> list[str]:
    """The outputs the request asks for (all when it names none); an unknown name is an error."""
    available = output_names(model)
    raw = request.get("outputs")
    if raw is None:
        return available
    if not isinstance(raw, list):
        raise MalformedBodyError("'outputs' must be a list of objects with a name")
    names: list[str] = []
    for index, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            raise MalformedBodyError(f"outputs[{index}] must be an object with a name")
        if name not in available:
            raise InputError(f"unknown output '{name}'; model '{model.name}' produces {', '.join(available)}")
        if name not in names:
            names.append(name)
    return names or available


def output_tensor(prediction: Prediction, name: str) -> dict[str, Any]:
    """One response output: `label` (BYTES [N]), `probabilities` (FP64 [N, C]) or `prediction` (FP64 [N])."""
    rows = len(prediction.output.values)
    if name == "label":
        return {"name": name, "datatype": "BYTES", "shape": [rows], "data": prediction.labels()}
    if name == "probabilities":
        if prediction.output.probabilities is None:
            raise BundleError(f"model '{prediction.model.name}' returned no probabilities")
        matrix = np.asarray(prediction.output.probabilities, dtype=np.float64)
        return {"name": name, "datatype": "FP64", "shape": list(matrix.shape), "data": matrix.reshape(-1)}
    return {"name": name, "datatype": "FP64", "shape": [rows], "data": prediction.values()}


def model_metadata(model: ServedModel) -> dict[str, Any]:
    """The protocol's model metadata: name, versions, platform, input and output tensors."""
    classes = model.metadata.classes or []
    shapes = {"label": [-1], "probabilities": [-1, len(classes)], "prediction": [-1]}
    return {
        "name": model.name,
        "versions": [str(model.version)],
        "platform": _PLATFORMS.get(model.engine.name, model.engine.name),
        "inputs": [
            {"name": f.name, "datatype": _FEATURE_DATATYPE[f.dtype], "shape": [-1]}
            for f in model.metadata.features
        ],
        "outputs": [
            {"name": n, "datatype": "BYTES" if n == "label" else "FP64", "shape": shapes[n]}
            for n in output_names(model)
        ],
    }


def _version(name: str, text: str | None) -> int | None:
    if text is None:
        return None
    number = parse_natural(text)
    if number is None:
        raise NotFoundError(f"model '{name}' has no version {text!r}; versions are numbers")
    return number


def build_router(service: InferenceService) -> APIRouter:
    """The V2 routes over `service`."""
    router = APIRouter(
        prefix="/v2",
        tags=["open inference protocol (v2)"],
        responses=error_responses(Transport.V2, *MODEL_ROUTE),
    )

    @router.get("/health/live", summary="The server is live")
    async def server_live() -> Response:
        return json_response({"live": True})

    @router.get("/health/ready", summary="Every model is ready")
    async def server_ready() -> Response:
        ready = service.registry.ready()
        return json_response({"ready": ready}, status=200 if ready else 503)

    @router.get("", summary="Server metadata")
    async def server_metadata() -> Response:
        return json_response({"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS})

    @_v2_errors
    async def metadata(request: Request, model_name: str, model_version: str | None = None) -> Response:
        model = await _model(model_name, model_version)
        return json_response(model_metadata(model), headers=mark(request, model))

    @_v2_errors
    async def ready(request: Request, model_name: str, model_version: str | None = None) -> Response:
        model = await _model(model_name, model_version)
        return json_response({"name": model_name, "ready": True}, headers=mark(request, model))

    @_v2_errors
    async def infer(request: Request, model_name: str, model_version: str | None = None) -> Response:
        version = _version(model_name, model_version)
        body = await request.body()
        header = request.headers.get(BINARY_HEADER)
        inference, blob = await service.prepare(len(body) <= INLINE_BYTES, partial(split_body, body, header))
        decode = partial(_feeds, inference=inference, blob=blob)
        answer = await service.infer(
            InferenceRequest(
                model_name,
                decode,
                version,
                size=len(body),
                request_id=request_id_of(request.scope),
                headers=request.scope["headers"],
                state=request_state(request.scope),
            )
        )
        prediction = answer.prediction
        model = prediction.model
        outputs = requested_outputs(inference, model)
        request_id = inference.get("id")
        response: dict[str, Any] = {"model_name": model.name, "model_version": str(model.version)}
        if request_id is not None:
            response["id"] = request_id
        response["outputs"] = [output_tensor(prediction, n) for n in outputs]
        return json_response(response, headers=mark(request, model))

    async def _model(name: str, version: str | None) -> ServedModel:
        return await service.resolve(name, _version(name, version))  # loads an uncached version off the loop

    def _feeds(model: ServedModel, *, inference: dict[str, Any], blob: bytes) -> Feeds:
        requested_outputs(inference, model)  # an unknown output is refused before any work
        tensors = read_inputs(inference, blob, max_inputs=model.validator.max_fields)
        return model.validator.column_feeds(columns_of(model, tensors))

    infer_docs: dict[str, Any] = {
        "summary": "Inference",
        "responses": error_responses(Transport.V2, 400, 413),
        "openapi_extra": {"requestBody": INFER_REQUEST_BODY},
    }
    for path, version in (
        ("/models/{model_name}", False),
        ("/models/{model_name}/versions/{model_version}", True),
    ):
        pick = (lambda handler: handler) if version else _current_version
        router.add_api_route(path, pick(metadata), methods=["GET"], summary="Model metadata")
        router.add_api_route(path + "/ready", pick(ready), methods=["GET"], summary="The model is ready")
        router.add_api_route(path + "/infer", pick(infer), methods=["POST"], **infer_docs)
    return router


def _current_version(
    handler: Callable[[Request, str, str | None], Awaitable[Response]],
) -> Callable[[Request, str], Awaitable[Response]]:
    """`handler` for the route without `/versions/{model_version}` (no version parameter at all)."""

    async def route(request: Request, model_name: str) -> Response:
        return await handler(request, model_name, None)

    route.__name__ = f"{handler.__name__}_current"
    route.__doc__ = handler.__doc__
    return route


_TENSOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": 2},
        "datatype": {"type": "string", "enum": sorted(DATATYPES)},
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}
INFER_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "id": {"type": "string"},
                    "parameters": {"type": "object"},
                    "inputs": {"type": "array", "minItems": 1, "items": _TENSOR_SCHEMA},
                    "outputs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": {"type": "string"}},
                        },
                    },
                },
            }
        },
        # The binary tensor data extension: a JSON header of Inference-Header-Content-Length bytes,
        # then the tensors' bytes.
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
"""The inference request (OIP `inference_rest.md`), as JSON or with binary tensor data."""
