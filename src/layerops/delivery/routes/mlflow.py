"""MLflow's scoring protocol as `mlflow models serve` implements it (`mlflow/pyfunc/scoring_server`).

`GET /ping` and `/health` (body "\\n"), `GET /version`, and `POST /invocations` taking JSON with
exactly one of `dataframe_split`, `dataframe_records`, `instances`, `inputs`, or a `text/csv` body
(header row + rows). Answers `{"predictions": [...]}`: class labels for a classifier (what an
sklearn pyfunc's `predict` returns), values for a regressor. Errors have MLflow's body
`{"error_code": ..., "message": ...}`: BAD_REQUEST (400), RESOURCE_DOES_NOT_EXIST (404),
TEMPORARILY_UNAVAILABLE (503). With several served models, `?model=NAME` or an `X-Model-Name`
header picks the one that answers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from functools import partial
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Header, Request
from starlette.responses import PlainTextResponse, Response

from layerops.delivery.feeds import Feeds
from layerops.delivery.http_errors import (
    MalformedBodyError,
    Transport,
    UnsupportedMediaTypeError,
    answer_errors_with,
    parse_json,
    request_id_of,
)
from layerops.delivery.inputs import InputValidator
from layerops.delivery.middleware import request_state
from layerops.delivery.models import ServedModel
from layerops.delivery.responses import error_responses
from layerops.delivery.routes.native import json_response, mark
from layerops.delivery.service import InferenceRequest, InferenceService
from layerops.errors import LayeropsError
from layerops.version import __version__

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
"""The JSON input fields MLflow's scoring server takes (exactly one per request)."""
CONTENT_TYPES = ("application/json", "text/csv")
"""The request media types `/invocations` takes (MLflow also takes Parquet; this server does not)."""
REQUIRED_INPUT_FORMAT = (
    "The input must be a JSON dictionary with exactly one of the input fields "
    "{'dataframe_split', 'dataframe_records', 'instances', 'inputs'}"
)
Columns = dict[str, list[Any]]
"""Feature name → values, one per row."""
Rows = list[Any]
"""Row objects (feature name → value)."""


_mlflow_errors = answer_errors_with(Transport.MLFLOW)


def media_type(content_type: str | None) -> str:
    """The body's media type: JSON or CSV, UTF-8 only (a missing Content-Type is taken as JSON)."""
    if not content_type:
        return "application/json"
    mime, *parameters = (part.strip() for part in content_type.split(";"))
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() != "charset":
            raise UnsupportedMediaTypeError(f"Unrecognized content type parameter: {key.strip()}")
        if value.strip().strip('"').lower() != "utf-8":
            raise UnsupportedMediaTypeError("The scoring server only supports UTF-8")
    if mime.lower() not in CONTENT_TYPES:
        raise UnsupportedMediaTypeError(
            f"This predictor only supports the following content types: {', '.join(CONTENT_TYPES)}. "
            f"Got '{content_type}'."
        )
    return mime.lower()


def parse_payload(data: Any, validator: InputValidator) -> Columns | Rows:
    """Named columns (a dict) or rows (a list) from a decoded MLflow JSON request.

    Rows given as lists rather than objects are positional, in the model's feature order. Too many
    rows are refused (the validator's row limit) before any per-row work.
    """
    if not isinstance(data, dict):
        received = "a list" if isinstance(data, list) else f"type {type(data).__name__}"
        raise MalformedBodyError(f"Invalid input. {REQUIRED_INPUT_FORMAT}. Received {received}.")
    present = [key for key in FORMATS if key in data]
    if len(present) != 1:
        raise MalformedBodyError(
            f"{REQUIRED_INPUT_FORMAT}. Received dictionary with input fields: {list(data)}."
        )
    key = present[0]
    value = data[key]
    if key == "dataframe_split":
        _check_rows(value.get("data") if isinstance(value, dict) else None, validator)
        return _split(value, validator.names)
    if key == "dataframe_records":
        if not isinstance(value, list):
            raise MalformedBodyError("Invalid input. Dataframe records format must be a list of records.")
        _check_rows(value, validator)
        return _rows(value, validator.names)
    if isinstance(value, dict):  # `instances` / `inputs` as columns, or as one record
        if any(isinstance(v, list) for v in value.values()):
            return dict(value)
        return [value]
    if isinstance(value, list):
        _check_rows(value, validator)
        return _rows(value, validator.names)
    raise MalformedBodyError(f"Invalid input. '{key}' must be a list of records or a dictionary of columns.")


def _check_rows(rows: Any, validator: InputValidator) -> None:
    if isinstance(rows, list):
        validator.check_count(len(rows))


def _split(value: Any, names: Sequence[str]) -> Columns:
    """`dataframe_split`: {columns, data[, index]}; without columns, data is in feature order."""
    if not isinstance(value, dict) or "data" not in value or set(value) - {"columns", "data", "index"}:
        raise MalformedBodyError(
            "Invalid input. Dataframe split format must be a dictionary with a 'data' field and "
            "optionally 'columns' and 'index' fields."
        )
    columns = value.get("columns", list(names))
    rows = value["data"]
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise MalformedBodyError("Invalid input. dataframe_split 'columns' must be a list of column names.")
    if len(set(columns)) != len(columns):
        raise MalformedBodyError("Invalid input. dataframe_split 'columns' has duplicate names.")
    if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == len(columns) for r in rows):
        raise MalformedBodyError(
            f"Invalid input. dataframe_split 'data' must be a list of rows of {len(columns)} values "
            f"({', '.join(columns)})."
        )
    return {name: [row[j] for row in rows] for j, name in enumerate(columns)}


def _rows(records: list[Any], names: Sequence[str]) -> Rows:
    """Records as objects; a row given as a list maps positionally onto the feature names."""
    rows: Rows = []
    for index, record in enumerate(records):
        if isinstance(record, list):
            if len(record) != len(names):
                raise MalformedBodyError(
                    f"Invalid input. Row {index} has {len(record)} values; the model takes "
                    f"{len(names)} ({', '.join(names)})."
                )
            record = dict(zip(names, record, strict=True))
        rows.append(record)
    return rows


def parse_csv(body: bytes, validator: InputValidator) -> Columns:
    """Named columns from a CSV body (a header row, then rows); empty cells are missing values.

    The header is checked before pandas sees the body (too many columns, or unknown ones, are
    refused at once: pandas spends seconds per thousand columns), only the model's columns are
    parsed, and no more than one row past the row limit is read.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBodyError(f"{_CSV_HINT} Error: '{exc}'") from None
    first_line = text.split("\n", 1)[0].rstrip("\r")
    header = next(csv.reader([first_line]), [])
    validator.check_fields(header)
    known = [name for name in dict.fromkeys(header) if name in validator.names]
    categorical = [f.name for f in validator.features if f.dtype == "category"]
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            dtype=dict.fromkeys(categorical, str),
            usecols=known or None,
            nrows=validator.max_rows + 1,
        )
    except ValueError as exc:  # pandas' parser errors are ValueErrors
        raise MalformedBodyError(f"{_CSV_HINT} Error: '{exc}'") from None
    frame = frame.astype(object).where(frame.notna(), None)
    return {str(name): values for name, values in frame.to_dict(orient="list").items()}


_CSV_HINT = (
    "Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid CSV-formatted "
    "Pandas DataFrame produced using the `pandas.DataFrame.to_csv()` method."
)


def build_router(service: InferenceService) -> APIRouter:
    """`/ping`, `/health`, `/version` and `/invocations` over `service`."""
    router = APIRouter(
        tags=["mlflow scoring protocol"], responses=error_responses(Transport.MLFLOW, 500, 504)
    )

    async def ping() -> Response:
        status = 200 if service.registry.ready() else 503
        return Response("\n", status_code=status, media_type="application/json")

    # MLflow answers "\n" labelled application/json; the routes say no body schema (not JSON).
    for path, summary in (("/ping", "Healthy when every model is loaded"), ("/health", "The same as /ping")):
        router.add_api_route(path, ping, methods=["GET"], summary=summary, response_class=Response)

    @router.get("/version", summary="The server version", response_class=PlainTextResponse)
    async def version() -> Response:
        return Response(__version__, media_type="text/plain")

    def model_name(query: str | None, header: str | None) -> str:
        if query and header and query != header:
            raise LayeropsError(f"?model={query} and X-Model-Name: {header} name different models")
        chosen = query or header
        if chosen:
            return chosen
        served = sorted(service.registry.refs)
        if len(served) == 1:
            return served[0]
        raise LayeropsError(
            f"this server serves several models ({', '.join(served)}); "
            "choose one with ?model=NAME or an X-Model-Name header"
        )

    def feeds_of(model: ServedModel, *, body: bytes, media: str) -> Feeds:
        if media == "text/csv":
            return model.validator.column_feeds(parse_csv(body, model.validator))
        payload = parse_payload(parse_json(body), model.validator)
        if isinstance(payload, dict):
            return model.validator.column_feeds(payload)
        return model.validator.row_feeds(payload)

    @router.post(
        "/invocations",
        summary="Predict (MLflow scoring protocol)",
        responses=error_responses(Transport.MLFLOW, 400, 401, 404, 413, 415, 503),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "text/csv": {"schema": {"type": "string"}},
                },
            }
        },
    )
    @_mlflow_errors
    async def invocations(
        request: Request,
        model: str | None = None,
        x_model_name: Annotated[str | None, Header()] = None,
    ) -> Response:
        name = model_name(model, x_model_name)
        media = media_type(request.headers.get("content-type"))
        body = await request.body()
        request_id = request_id_of(request.scope)
        decode = partial(feeds_of, body=body, media=media)
        cheap = media == "application/json"  # CSV goes through pandas: always the pool
        answer = await service.infer(
            InferenceRequest(
                name,
                decode,
                size=len(body),
                cheap=cheap,
                request_id=request_id,
                headers=request.scope["headers"],
                state=request_state(request.scope),
            )
        )
        prediction = answer.prediction
        return json_response(
            {"predictions": prediction.predictions()}, headers=mark(request, prediction.model)
        )

    return router
