"""Open Inference Protocol (KServe V2) request decoding: tensors in, named feature columns out.

A request is a JSON object (optionally followed by Triton's binary tensor data) whose `inputs`
are tensors; each is checked for shape and element type here, then mapped onto the model's
features: one tensor per feature ([N] or [N, 1]) or, for an all-numeric model, one [N, F] tensor
in schema order. Data may be flat (row-major) or nested.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from layerops.delivery.http_errors import MalformedBodyError, parse_json
from layerops.delivery.models import ServedModel
from layerops.errors import InputError
from layerops.numbers import parse_natural

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
_ACCEPTED = {
    "float": _NUMERIC,
    "int": _NUMERIC,
    "bool": _NUMERIC | {"BOOL"},
    "category": frozenset({"BYTES"}),
}


@dataclass(frozen=True)
class Tensor:
    """One request input: its declared shape and datatype, and its elements flat in row-major order."""

    name: str
    shape: tuple[int, ...]
    datatype: str
    values: list[Any]


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
