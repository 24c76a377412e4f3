"""Fixtures for the delivery layer: a repository holding trained iris and shipping models, apps, clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from layerops.bundle import BundleMetadata, FeatureSchema, Lineage
from layerops.datasets import iris, shipping
from layerops.delivery.app import create_app
from layerops.delivery.runtime import build_runtime
from layerops.delivery.settings import ServeSettings
from layerops.repository.api import ModelRepository
from layerops.repository.factory import open_repository
from layerops.settings import Settings
from layerops.spec import parse_spec
from layerops.training.pipeline import train

USER_KEY = "user-key-for-tests-0123456789"
ADMIN_KEY = "admin-key-for-tests-0123456789"
USER = {"Authorization": f"Bearer {USER_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}

IRIS_ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
SHIPPING_ROW = {
    "length": 30.0,
    "width": 20.0,
    "height": 10.0,
    "weight": 2.5,
    "origin": "north",
    "destination": "east",
    "service_level": "express",
}
IRIS_ROWS = [
    IRIS_ROW,
    {"sepal_length": 6.0, "sepal_width": 2.7, "petal_length": 5.1, "petal_width": 1.6},
    {"sepal_length": 7.7, "sepal_width": 3.0, "petal_length": 6.1, "petal_width": 2.3},
]
SHIPPING_ROWS = [
    SHIPPING_ROW,
    {**SHIPPING_ROW, "weight": 12.0, "origin": "south", "service_level": "economy"},
]


def schema_metadata(name: str, target: str, features: list[FeatureSchema]) -> BundleMetadata:
    """Metadata of a regression model with these input features (for validator and feed tests)."""
    return BundleMetadata(
        name=name,
        task="regression",
        target=target,
        features=features,
        candidate="linear",
        lineage=Lineage(dataset_sha256="0", spec_sha256="0", seed=0),
        created_at="2026-11-24T00:00:00+00:00",
    )


def train_demo_models(
    home: Path, *, iris_candidates: list[dict[str, object]] | None = None
) -> ModelRepository:
    """Train small iris (classification) and shipping (regression) models into `home`; promote v1."""
    data = home / "data"
    data.mkdir(parents=True, exist_ok=True)
    iris().to_csv(data / "iris.csv", index=False)
    shipping(600, seed=1).to_csv(data / "shipping.csv", index=False)
    repository = open_repository(Settings(home=home))
    specs = [
        {
            "name": "iris",
            "data": {"path": "iris.csv"},
            "target": "species",
            "cleaning": {"collinearity_threshold": None},
            "candidates": iris_candidates
            or [{"name": "random_forest", "params": {"n_estimators": 20, "max_depth": 4}}],
        },
        {
            "name": "shipping",
            "data": {"path": "shipping.csv"},
            "target": "cost",
            "candidates": [{"name": "lightgbm", "params": {"n_estimators": 40}}],
        },
    ]
    for raw in specs:
        # Serving is under test here, not tuning: score trials on the validation split, not by
        # 5×2-fold CV (ten fits a trial), as small data would by default.
        raw["tuning"] = {"cv_folds": 0}
        result = train(parse_spec(raw, base_dir=data), repository)
        assert result.version is not None
        repository.set_alias(str(raw["name"]), "production", result.version.version, reason="fixture")
    return repository


@pytest.fixture(scope="session")
def served_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A layerops home with iris v1 and shipping v1 promoted to production (shared, read-only)."""
    home = tmp_path_factory.mktemp("served")
    train_demo_models(home)
    return home


@pytest.fixture
def serve_settings(served_home: Path) -> ServeSettings:
    """Settings for an app over the shared home: keys set, polling off."""
    return ServeSettings(
        home=served_home,
        api_keys=[USER_KEY],
        admin_api_keys=[ADMIN_KEY],
        reload_interval_seconds=0,
    )


@pytest.fixture
def app(serve_settings: ServeSettings) -> FastAPI:
    """An app serving every production model of the shared home."""
    return create_app(build_runtime(serve_settings, open_repository(serve_settings)))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A client with the lifespan (initiating phase) run; sends the user key by default."""
    with TestClient(app, headers=USER) as test_client:
        yield test_client
