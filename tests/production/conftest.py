"""One production-shaped stack for the package, started once: moto (S3), a fresh PostgreSQL
database and an MLflow tracking server over both. Each test uses its own model names; the direct
`s3://` tests track straight on the same database, as a batch job beside the server would."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest

from tests.conftest import fresh_postgres_database
from tests.production.stack import S3Store, TrackingServer, moto_server, postgres_for_mlflow, tracking_server


@pytest.fixture(scope="package")
def s3_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Store]:
    """moto's standalone S3 server on a free loopback port, with one empty bucket."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as store:
        yield store


@pytest.fixture(scope="package")
def database() -> Iterator[str]:
    """A fresh PostgreSQL database as MLflow's SQLAlchemy URL (`postgresql+psycopg://`), dropped
    afterwards; skips (fails in CI) where PostgreSQL is unreachable."""
    with fresh_postgres_database() as url:
        yield postgres_for_mlflow(url)


@pytest.fixture(scope="package")
def server(
    database: str, s3_store: S3Store, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrackingServer]:
    """An MLflow tracking server on `database`, artifacts proxied to `s3_store`."""
    log = tmp_path_factory.mktemp("mlflow-server") / "server.log"
    with tracking_server(database, s3_store, log, meanwhile=_preload) as running:
        yield running


PRELOAD = (
    "layerops.api.training",
    "layerops.training.pipeline",
    "layerops.repository.mlflow_repo",
    "mlflow.store.tracking.rest_store",
    "mlflow.store.model_registry.rest_store",
    "mlflow.store.artifact.mlflow_artifacts_repo",
    "onnxruntime",
    "pyarrow.parquet",
    "skl2onnx",
)
"""What training and registering through a server import (some lazily): imported while the server
starts, and before test_concurrency forks its trainers (which then train at once instead of each
importing for seconds, which would also spread their registrations out)."""


def _preload() -> None:
    for module in PRELOAD:
        importlib.import_module(module)
