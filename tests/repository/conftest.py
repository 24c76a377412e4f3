"""Fixtures: a real sqlite MLflow repository per test, a saved iris bundle and a training run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from layerops.bundle import ModelBundle, save_bundle
from layerops.repository.api import CandidateRun, TrainingRun
from layerops.repository.mlflow_repo import MlflowRepository
from tests.bundle.builders import iris_bundle


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated MLflow sqlite database (migrations take seconds: done once)."""
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowRepository(f"sqlite:///{path}")
    return path


@pytest.fixture
def tracking_uri(template_db: Path, tmp_path: Path) -> str:
    """A private copy of the template database for one test."""
    path = tmp_path / "mlflow.db"
    shutil.copyfile(template_db, path)
    return f"sqlite:///{path}"


@pytest.fixture
def repo(tracking_uri: str, tmp_path: Path) -> MlflowRepository:
    """A repository on the test's own sqlite database with local artifacts."""
    return MlflowRepository(tracking_uri, artifact_root=str(tmp_path / "artifacts"))


@pytest.fixture
def bundle(iris_frame: pd.DataFrame) -> ModelBundle:
    """A fitted iris bundle (scaler + logistic regression)."""
    return iris_bundle(iris_frame)


@pytest.fixture
def bundle_dir(bundle: ModelBundle, tmp_path: Path) -> Path:
    """The iris bundle saved to a folder."""
    folder = tmp_path / "bundle"
    save_bundle(bundle, folder)
    return folder


@pytest.fixture
def training_run() -> TrainingRun:
    """A pipeline run with two candidates; logistic regression wins."""
    return TrainingRun(
        pipeline="iris",
        params={"task": "classification", "target": "species", "seed": 7},
        tags={"layerops.dataset_sha256": "0" * 64, "layerops.spec_sha256": "1" * 64},
        candidates=[
            CandidateRun(
                name="logistic_regression",
                params={"C": 1.0},
                metrics={"val_accuracy": 0.96, "test_accuracy": 0.95, "fit_seconds": 0.1},
                system_metrics={"peak_rss_mb": 210.5, "cpu_percent": 87.0},
                trials=[({"C": 0.1}, 0.9), ({"C": 1.0}, 0.96)],
            ),
            CandidateRun(
                name="baseline",
                params={"strategy": "prior"},
                metrics={"val_accuracy": 0.33, "test_accuracy": 0.33},
                system_metrics={"peak_rss_mb": 190.0, "cpu_percent": 12.0},
            ),
        ],
        winner="logistic_regression",
        leaderboard_csv="candidate,val_accuracy\nlogistic_regression,0.96\nbaseline,0.33\n",
    )
