"""What the OpenAPI document says each route answers: the error statuses and bodies per transport.

Every route declares its error statuses with its transport's error body (`http_errors`), plus the
`4XX`/`5XX` ranges with the same body, so a client generated from `/openapi.json` (or schemathesis
checking responses against it) knows the shape of every answer, including those made by the
router (404, 405) and the middleware (401, 403, 413, 504).
"""

from __future__ import annotations

from typing import Any

from layerops.delivery.http_errors import Transport

_ERROR_SCHEMAS: dict[Transport, dict[str, Any]] = {
    Transport.NATIVE: {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {
                    "type": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {"type": "array", "items": {"type": "object"}},
                },
            }
        },
    },
    Transport.V2: {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    Transport.MLFLOW: {
        "type": "object",
        "required": ["error_code", "message"],
        "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}},
    },
}

_DESCRIPTIONS = {
    400: "Malformed body or invalid input",
    401: "Missing or invalid API key",
    403: "The API key may not call this route",
    404: "Unknown model, version or route",
    405: "Method not allowed",
    413: "Body above LAYEROPS_MAX_BODY_BYTES",
    415: "Unsupported media type",
    422: "Input does not fit the model's schema",
    500: "Internal error (the message names the request id)",
    503: "Model not loaded yet, or the server is at capacity (Retry-After)",
    504: "Not answered within the request timeout",
}


def error_responses(transport: Transport, *statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses (and the 4XX/5XX ranges) in `transport`'s body."""
    content = {"application/json": {"schema": _ERROR_SCHEMAS[transport]}}
    declared: dict[int | str, dict[str, Any]] = {
        status: {"description": _DESCRIPTIONS[status], "content": content} for status in statuses
    }
    declared["4XX"] = {"description": "Any other client error", "content": content}
    declared["5XX"] = {"description": "Any other server error", "content": content}
    return declared


ALWAYS = (401, 500, 504)
"""What any protected route may answer: no key, an internal error, the timeout."""
MODEL_ROUTE = (*ALWAYS, 404, 503)
"""A route that names a model: unknown model or version, model not loaded."""
PREDICT_ROUTE = (*MODEL_ROUTE, 400, 413, 422)
"""A route that takes a body to predict on."""
