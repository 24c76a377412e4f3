"""What the middleware read from and write to an ASGI scope: the request's state, route, model."""

from __future__ import annotations

from typing import Any

from starlette.types import Scope


def request_state(scope: Scope) -> dict[str, Any]:
    """The request's `state` dict (what `request.state` reads and writes), created if missing."""
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


def route_template(scope: Scope) -> str | None:
    """The matched route's path template (e.g. `/models/{name}/predict`), or None before/without a match."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else None


def model_from_path(path: str) -> str | None:
    """The model named by `/models/{name}/...` or `/v2/models/{name}/...`; None for other paths."""
    parts = path.split("/")
    if len(parts) > 2 and parts[1] == "models":
        return parts[2] or None
    if len(parts) > 3 and parts[1] == "v2" and parts[2] == "models":
        return parts[3] or None
    return None


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None
