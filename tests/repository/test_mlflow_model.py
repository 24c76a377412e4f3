"""The MLflow sklearn model logged beside each bundle: MLflow's own loader serves the same model."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import yaml

from layerops.bundle import ModelBundle, load_bundle, save_bundle
from layerops.repository import TrainingRun, _runs
from layerops.repository.mlflow_repo import DIGEST_TAG, MLFLOW_MODEL_TAG, MlflowRepository
from tests.bundle.builders import IRIS_FEATURES, iris_bundle


@pytest.fixture
def forest_dir(iris_frame: pd.DataFrame, tmp_path: Path) -> Path:
    """An iris random-forest bundle: skops must be told to trust `sklearn.tree._tree.Tree`."""
    folder = tmp_path / "forest"
    save_bundle(iris_bundle(iris_frame, forest=True), folder)
    return folder


def test_the_registered_mlflow_model_predicts_like_the_bundle(
    repo: MlflowRepository, training_run: TrainingRun, forest_dir: Path, iris_frame: pd.DataFrame
) -> None:
    version = repo.register("iris", repo.log_training(training_run, forest_dir))

    uri = version.tags[MLFLOW_MODEL_TAG]
    served = mlflow.pyfunc.load_model(uri)
    bundle = repo.load_bundle("iris", version.version)
    rows = iris_frame[IRIS_FEATURES].sample(40, random_state=3)

    np.testing.assert_array_equal(np.asarray(served.predict(rows)), bundle.model.predict(rows))
    assert served.metadata.metadata["layerops_classes"] == bundle.metadata.classes
    assert served.metadata.get_input_schema().input_names() == IRIS_FEATURES


def test_the_mlflow_model_is_skops_with_the_bundle_trusted_types_and_outside_the_bundle(
    repo: MlflowRepository, training_run: TrainingRun, forest_dir: Path
) -> None:
    version = repo.register("iris", repo.log_training(training_run, forest_dir))

    local = Path(mlflow.artifacts.download_artifacts(version.tags[MLFLOW_MODEL_TAG]))
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["sklearn"]
    manifest = yaml.safe_load((forest_dir / "manifest.json").read_text())  # JSON is YAML
    assert flavor["serialization_format"] == "skops"
    assert "sklearn.tree._tree.Tree" in flavor["skops_trusted_types"]
    assert flavor["skops_trusted_types"] == manifest["trusted_types"]
    assert not list(local.glob("*.pkl"))
    # The bundle the version points to is unchanged: only its own files, digest still valid.
    bundle_folder = Path(mlflow.artifacts.download_artifacts(version.source))
    assert sorted(p.name for p in bundle_folder.iterdir()) == sorted(p.name for p in forest_dir.iterdir())
    load_bundle(bundle_folder, expected_digest=version.tags[DIGEST_TAG])


def test_the_mlflow_model_is_laid_out_as_mlflow_sklearn_save_model_writes_it(
    repo: MlflowRepository, training_run: TrainingRun, forest_dir: Path, tmp_path: Path
) -> None:
    """Guards the hand-written MLmodel against a change in MLflow's sklearn flavor layout."""
    version = repo.register("iris", repo.log_training(training_run, forest_dir))
    ours = Path(mlflow.artifacts.download_artifacts(version.tags[MLFLOW_MODEL_TAG]))
    manifest = yaml.safe_load((forest_dir / "manifest.json").read_text())
    theirs = tmp_path / "saved_by_mlflow"
    mlflow.sklearn.save_model(
        load_bundle(forest_dir).model,
        str(theirs),
        serialization_format="skops",
        skops_trusted_types=manifest["trusted_types"],
        pip_requirements=["scikit-learn"],
    )

    def mlmodel(folder: Path) -> dict[str, Any]:
        return dict(yaml.safe_load((folder / "MLmodel").read_text()))

    assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in theirs.iterdir())
    assert mlmodel(ours)["flavors"].keys() == mlmodel(theirs)["flavors"].keys()
    for flavor in ("sklearn", "python_function"):
        expected = mlmodel(theirs)["flavors"][flavor]
        actual = mlmodel(ours)["flavors"][flavor]
        assert actual.keys() == expected.keys()
        differ = {key for key in expected if actual[key] != expected[key]}
        assert differ <= {"python_version"}, differ  # the lineage's Python, not this one's
    digest = hashlib.sha256((forest_dir / "model.skops").read_bytes()).hexdigest()
    assert hashlib.sha256((ours / "model.skops").read_bytes()).hexdigest() == digest
    assert mlmodel(ours)["metadata"]["layerops_model_sha256"] == digest


def test_a_failed_mlflow_export_still_logs_and_registers_the_bundle(
    repo: MlflowRepository,
    training_run: TrainingRun,
    bundle_dir: Path,
    bundle: ModelBundle,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(*args: object) -> None:
        raise RuntimeError("this flavor cannot save the model")

    monkeypatch.setattr(_runs, "save_mlflow_model", refuse)
    with caplog.at_level(logging.WARNING, logger=_runs.__name__):
        version = repo.register("iris", repo.log_training(training_run, bundle_dir))

    assert MLFLOW_MODEL_TAG not in version.tags
    assert "this flavor cannot save the model" in caplog.text
    assert repo.load_bundle("iris", version.version).metadata.name == bundle.metadata.name
