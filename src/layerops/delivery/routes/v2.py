"""The Open Inference Protocol (KServe V2) REST routes (OIP `inference_rest.md`), over the service.

Tabular inputs: one tensor per feature ([N] or [N, 1]) or, for an all-numeric model, one [N, F]
tensor in schema order; data flat (row-major) or nested. Inputs may use Triton's binary tensor
data extension (`tritonclient.http`'s default); outputs are always JSON, which such clients read.
Errors: `{"error": "<message>"}` with 400 (bad request), 404 (unknown model/version), 503 (not ready).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from layerops import __version__
from layerops.delivery.feeds import Feeds
from layerops.delivery.http_errors import (
    MalformedBodyError,
    Transport,
    answer_errors_with,
    domain_error_response,
    parse_json,
)
from layerops.delivery.models import ServedModel
from layerops.delivery.responses import MODEL_ROUTE, error_responses
from layerops.delivery.routes.native import json_response, mark
from layerops.delivery.service import INLINE_BYTES, InferenceService, Prediction
from layerops.errors import BundleError, InputError, LayeropsError, NotFoundError
from layerops.numbers import parse_natural

SERVER_NAME = "layerops"
"""The server name in the server metadata."""
EXTENSIONS = ["binary_tensor_data"]
"""Protocol extensions the server implements (Triton's binary tensor data, for inputs)."""
BINARY_HEADER = "Inference-Header-Content-Length"
"""Triton's binary tensor data extension: the length of the JSON part of the body."""

_INT_RANGES: dict[str, tuple[int, int]] = {
    **{f"INT{bits}": (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) for bits in (8, 16, 32, 64)},
    **{f"UINT{bits}": (0, 2**bits - 1) for bits in (8, 16, 32, 64)},
}
_FLOATS = frozenset({"FP16", "FP32", "FP64"})
_NUMERIC = _FLOATS | frozenset(_INT_RANGES)
DATATYPES = _NUMERIC | {"BOOL", "BYTES"}
"""Every tensor datatype of the protocol."""
_NUMPY_DTYPES = {
    "BOOL": "?", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
    "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
}  # fmt: skip
_FEATURE_DATATYPE = {"float": "FP64", "int": "INT64", "bool": "BOOL", "category": "BYTES"}
_ACCEPTED = {
    "float": _NUMERIC,
    "int": _NUMERIC,
    "bool": _NUMERIC | {"BOOL"},
    "category": frozenset({"BYTES"}),
}
_PLATFORMS = {"onnx": "onnx_onnxv1", "native": "sklearn_skops"}


@dataclass(frozen=True)
class Tensor:
    """One request input: its declared shape and datatype, and its elements flat in row-major order."""

    name: str
    shape: tuple[int, ...]
    datatype: str
    values: list[Any]


def v2_error(exc: LayeropsError) -> Response:
    """A domain error as the protocol's error body (an invalid input is a 400 here, not a 422)."""
    return domain_error_response(exc, Transport.V2)


_v2_errors = answer_errors_with(Transport.V2)


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The inference request object and the binary tensor data that follows it (if any)."""
    blob = b""
    if header_length is not None:
        length = parse_natural(header_length.strip())
        if length is None or length > len(body):
            raise MalformedBodyError(f"{BINARY_HEADER} must be the byte length of the JSON part of the body")
        body, blob = body[:length], body[length:]
    request = parse_json(body)
    if not isinstance(request, dict):
        raise MalformedBodyError('the body must be an inference request object: {"inputs": [...]}')
    if "id" in request and not isinstance(request["id"], str):
        raise MalformedBodyError("'id' must be a string")
    return request, blob


def read_inputs(request: dict[str, Any], blob: bytes = b"", *, max_inputs: int = 1024) -> list[Tensor]:
    """The request's input tensors, their shapes and element types checked (at most `max_inputs`)."""
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise MalformedBodyError("'inputs' must be a non-empty list of tensors {name, shape, datatype, data}")
    if len(inputs) > max_inputs:
        raise InputError(f"{len(inputs)} input tensors; the limit is {max_inputs} (LAYEROPS_MAX_FIELDS)")
    tensors: list[Tensor] = []
    offset = 0
    for index, raw in enumerate(inputs):
        name = raw.get("name") if isinstance(raw, dict) else None
        if not isinstance(raw, dict) or not isinstance(name, str) or not name:
            raise MalformedBodyError(f"inputs[{index}] must be an object with name, shape, datatype, data")
        where = f"input '{name}'"
        shape, datatype = raw.get("shape"), raw.get("datatype")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise InputError(f"{where}: shape must be a list of non-negative integers")
        if len(shape) not in (1, 2):
            raise InputError(f"{where}: shape {shape} has {len(shape)} dimensions; tabular data has 1 or 2")
        if datatype not in DATATYPES:
            raise InputError(f"{where}: unknown datatype {datatype!r}; one of {', '.join(sorted(DATATYPES))}")
        parameters = raw.get("parameters") or {}
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is not None:
            if not _is_int(size) or size < 0 or offset + size > len(blob):
                raise InputError(f"{where}: binary_data_size {size!r} exceeds the binary data sent")
            values = _decode(where, datatype, blob[offset : offset + size], shape)
            offset += size
        elif "data" in raw:
            values = _flatten(where, raw["data"], shape)
        else:
            raise InputError(f"{where}: 'data' is required")
        _check_elements(where, datatype, values)
        tensors.append(Tensor(name, tuple(shape), datatype, values))
    if offset != len(blob):
        raise InputError(f"{len(blob) - offset} bytes of binary data are not claimed by any input")
    return tensors


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _flatten(where: str, data: Any, shape: list[int]) -> list[Any]:
    """Elements in row-major order from flat or nested data (shapes have 1 or 2 dimensions)."""
    expected = math.prod(shape)
    if not isinstance(data, list):
        raise InputError(f"{where}: data must be a JSON array")
    nested = [isinstance(item, list) for item in data]
    if not any(nested):
        if len(data) != expected:
            raise InputError(f"{where}: shape {shape} holds {expected} elements but data has {len(data)}")
        return data
    rows_ok = all(nested) and len(shape) == 2 and len(data) == shape[0]
    if not rows_ok or any(len(row) != shape[1] or any(isinstance(v, list) for v in row) for row in data):
        raise InputError(f"{where}: nested data does not match shape {shape}")
    return [value for row in data for value in row]


def _decode(where: str, datatype: str, raw: bytes, shape: list[int]) -> list[Any]:
    """Elements of a tensor sent as binary data (little-endian; BYTES as 4-byte length + bytes)."""
    expected = math.prod(shape)
    if datatype == "BYTES":
        values: list[Any] = []
        position = 0
        while position + 4 <= len(raw) and len(values) < expected:
            length = int.from_bytes(raw[position : position + 4], "little")
            item = raw[position + 4 : position + 4 + length]
            if len(item) != length:
                break
            try:
                values.append(item.decode("utf-8"))
            except UnicodeDecodeError:
                raise InputError(f"{where}: element {len(values)} is not UTF-8 text") from None
            position += 4 + length
        if position != len(raw) or len(values) != expected:
            raise InputError(f"{where}: the BYTES data does not hold the {expected} elements of {shape}")
        return values
    dtype = np.dtype(_NUMPY_DTYPES[datatype])
    if len(raw) != expected * dtype.itemsize:
        raise InputError(
            f"{where}: binary_data_size is {len(raw)} bytes; shape {shape} of {datatype} takes "
            f"{expected * dtype.itemsize}"
        )
    decoded: list[Any] = np.frombuffer(raw, dtype=dtype).tolist()
    return decoded


def _check_elements(where: str, datatype: str, values: Sequence[Any]) -> None:
    """Every element is a value of `datatype` (null means missing; the schema decides if it may be)."""
    bounds = _INT_RANGES.get(datatype)
    for index, value in enumerate(values):
        if value is None:
            continue
        if datatype == "BYTES":
            ok = isinstance(value, str)
        elif datatype == "BOOL":
            ok = isinstance(value, bool)
        elif bounds is not None:
            whole = _is_int(value) or (isinstance(value, float) and value.is_integer())
            ok = whole and bounds[0] <= value <= bounds[1]
        else:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok:
            shown = repr(value) if len(repr(value)) <= 30 else type(value).__name__
            raise InputError(f"{where}: element {index} ({shown}) is not a {datatype} value")


def columns_of(model: ServedModel, tensors: list[Tensor]) -> dict[str, list[Any]]:
    """Named feature columns from one tensor per feature, or from one [N, F] numeric tensor."""
    features = model.metadata.features
    names = [f.name for f in features]
    by_name = {f.name: f for f in features}
    if len(tensors) == 1 and tensors[0].name not in by_name:
        return _matrix_columns(model, tensors[0])
    columns: dict[str, list[Any]] = {}
    for tensor in tensors:
        where = f"input '{tensor.name}'"
        feature = by_name.get(tensor.name)
        if feature is None:
            if model.validator.extra == "ignore":
                continue
            raise InputError(
                f"unknown {where}; model '{model.name}' takes one tensor per feature ({', '.join(names)}) "
                "or a single [N, F] tensor of all features"
            )
        if tensor.name in columns:
            raise InputError(f"{where} is given twice")
        if not (len(tensor.shape) == 1 or tensor.shape[1] == 1):
            raise InputError(f"{where}: a feature tensor has shape [N] or [N, 1]; got {list(tensor.shape)}")
        accepted = _ACCEPTED[feature.dtype]
        if tensor.datatype not in accepted:
            wanted = "send BYTES" if feature.dtype == "category" else "send a number type, e.g. FP64 or INT64"
            raise InputError(
                f"{where}: datatype {tensor.datatype} does not fit a {feature.dtype} feature: {wanted}"
            )
        columns[tensor.name] = tensor.values
    sizes = sorted({t.shape[0] for t in tensors if t.name in columns})
    if len(sizes) > 1:
        raise InputError(f"input tensors have different batch sizes: {sizes}")
    missing = [f.name for f in features if f.required and f.name not in columns]
    if missing:
        raise InputError(
            f"missing input tensor {', '.join(repr(m) for m in missing)}; the model takes: {', '.join(names)}"
        )
    return columns


def _matrix_columns(model: ServedModel, tensor: Tensor) -> dict[str, list[Any]]:
    names = [f.name for f in model.metadata.features]
    where = f"input '{tensor.name}'"
    categorical = [f.name for f in model.metadata.features if f.dtype == "category"]
    if categorical:
        raise InputError(
            f"{where} is not a feature of model '{model.name}'; it has categorical features "
            f"({', '.join(categorical)}), so send one tensor per feature: {', '.join(names)}"
        )
    if len(tensor.shape) != 2 or tensor.shape[1] != len(names):
        raise InputError(
            f"{where}: a single tensor must have shape [N, {len(names)}] (columns {', '.join(names)}); "
            f"got {list(tensor.shape)}; or send one tensor per feature"
        )
    if tensor.datatype not in _NUMERIC:
        raise InputError(
            f"{where}: datatype {tensor.datatype} is not numeric; send FP32, FP64, INT32 or INT64"
        )
    width = len(names)
    return {name: tensor.values[j::width] for j, name in enumerate(names)}


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
        small = len(body) <= INLINE_BYTES
        header = request.headers.get(BINARY_HEADER)
        inference, blob = await service.prepare(small, partial(split_body, body, header))
        model = await service.resolve(model_name, version)
        outputs = requested_outputs(inference, model)
        feeds = await service.prepare(small, partial(_feeds, model, inference, blob))
        prediction = await service.predict_feeds(model, feeds)
        request_id = inference.get("id")
        response: dict[str, Any] = {"model_name": model.name, "model_version": str(model.version)}
        if request_id is not None:
            response["id"] = request_id
        response["outputs"] = [output_tensor(prediction, n) for n in outputs]
        return json_response(response, headers=mark(request, model))

    async def _model(name: str, version: str | None) -> ServedModel:
        return await service.resolve(name, _version(name, version))  # loads an uncached version off the loop

    def _feeds(model: ServedModel, request: dict[str, Any], blob: bytes) -> Feeds:
        tensors = read_inputs(request, blob, max_inputs=model.validator.max_fields)
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
