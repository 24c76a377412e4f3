"""Every route of the app refuses a request without a key, except the ones meant to be public."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute, Route

from layerops.delivery.app import DOCS_PATHS, PUBLIC_PATHS
from tests.delivery.conftest import ADMIN, USER

PARAMS = {"name": "iris", "version": "1", "model_name": "iris", "model_version": "1"}


def _concrete(path: str) -> str:
    return re.sub(r"{(\w+)(:\w+)?}", lambda m: PARAMS.get(m.group(1), "x"), path)


def _walk(routes: list[BaseRoute]) -> list[tuple[str, str]]:
    found = []
    for route in routes:
        # FastAPI >= 0.16x keeps an included router as one entry wrapping the original router.
        nested = getattr(route, "original_router", None)
        if nested is not None:
            found.extend(_walk(nested.routes))
        elif isinstance(route, Route):
            found.extend(
                (method, route.path) for method in sorted(route.methods or {"GET"}) if method != "HEAD"
            )
    return found


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    return _walk(app.routes)


def test_every_non_public_route_refuses_a_request_without_a_key(client: TestClient, app: FastAPI) -> None:
    routes = _routes(app)
    assert ("POST", "/models/{name}/predict") in routes and ("POST", "/admin/reload") in routes
    open_paths = PUBLIC_PATHS | DOCS_PATHS
    checked = 0
    for method, path in routes:
        url = _concrete(path)
        response = client.request(method, url, headers={"Authorization": ""}, json={})
        if path in open_paths:
            assert response.status_code != 401, (method, path)
            continue
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        wrong = client.request(method, url, headers={"Authorization": "Bearer wrong-key"}, json={})
        assert wrong.status_code == 401, (method, path)
        checked += 1
    assert checked >= 8


def test_admin_routes_need_the_admin_scope(client: TestClient) -> None:
    assert client.post("/admin/reload", headers=USER).status_code == 403
    response = client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 200
    assert {o["status"] for o in response.json()["outcomes"]} == {"unchanged"}


def test_metrics_need_a_key_unless_public(client: TestClient) -> None:
    assert client.get("/metrics", headers={"Authorization": ""}).status_code == 401
    assert client.get("/metrics").status_code == 200
