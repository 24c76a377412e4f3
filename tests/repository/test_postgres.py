"""The register/alias/rollback flow against a real PostgreSQL tracking database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from layerops.bundle import ModelBundle
from layerops.repository import TrainingRun
from layerops.repository.mlflow_repo import MlflowRepository
from tests.bundle.builders import IRIS_FEATURES
from tests.conftest import fresh_postgres_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def postgres_uri() -> Iterator[str]:
    """A fresh database `layerops_test_<random>` on the local server, dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url


def test_register_alias_rollback_and_load_on_postgres(
    postgres_uri: str,
    tmp_path: Path,
    training_run: TrainingRun,
    bundle_dir: Path,
    bundle: ModelBundle,
    iris_frame: pd.DataFrame,
) -> None:
    repo = MlflowRepository(postgres_uri, artifact_root=str(tmp_path / "artifacts"))
    info = repo.log_training(training_run, bundle_dir)
    versions = [repo.register("iris", info).version for _ in range(2)]
    repo.set_alias("iris", "production", 1, reason="first")
    repo.set_alias("iris", "production", 2, reason="second")

    repo.rollback("iris", "production", reason="bad canary")

    assert versions == [1, 2]
    assert repo.resolve_alias("iris", "production").version == 1
    history = MlflowRepository(postgres_uri).history("iris")
    assert [(c.previous, c.version) for c in history] == [(None, 1), (1, 2), (2, 1)]
    loaded = repo.load_bundle("iris", "production")
    features = iris_frame[IRIS_FEATURES]
    np.testing.assert_allclose(loaded.model.predict_proba(features), bundle.model.predict_proba(features))
