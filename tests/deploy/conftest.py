"""The real server app, for checking the paths deploy/ probes against it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.deploy.stack import KEY


@pytest.fixture(scope="session")
def unstarted_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """`create_app(build_runtime(...))`, as `layerops serve` builds it, over an empty repository and
    never started (no lifespan: nothing loaded), with an API key configured, so a probe that needed
    a key would get 401. A client without credentials."""
    from layerops.delivery.app import create_app
    from layerops.delivery.runtime import build_runtime
    from layerops.delivery.settings import ServeSettings
    from layerops.repository.factory import open_repository

    settings = ServeSettings(home=tmp_path_factory.mktemp("app"), models=["iris"], api_keys=[KEY])
    yield TestClient(create_app(build_runtime(settings, open_repository(settings))))


def get_paths(client: TestClient) -> set[str]:
    """The paths the app serves to GET, from its OpenAPI document (which lists every route)."""
    document = client.app.openapi()  # type: ignore[attr-defined]
    return {path for path, operations in document["paths"].items() if "get" in operations}
