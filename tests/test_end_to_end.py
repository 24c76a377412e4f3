"""From a spec to a registered version, and back out of the repository as the same model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from layerops.bundle.onnx_io import onnx_feeds
from layerops.errors import TrainingError
from layerops.repository.api import ModelRepository
from layerops.repository.factory import open_repository
from layerops.settings import Settings
from layerops.spec import PipelineSpec, parse_spec
from layerops.training.dataio import dataset_sha256
from layerops.training.pipeline import train
from layerops.training.transform import prepare_features

pytestmark = pytest.mark.slow


def _iris_spec(folder: Path, frame: pd.DataFrame, **overrides: object) -> PipelineSpec:
    frame.to_csv(folder / "iris.csv", index=False)
    raw: dict[str, object] = {
        "name": "iris",
        "data": {"path": "iris.csv"},
        "target": "species",
        "seed": 11,
        "cleaning": {"collinearity_threshold": None},
        "candidates": [
            {"name": "linear"},
            {"name": "random_forest", "params": {"n_estimators": 30, "n_jobs": 1}},
        ],
        "tuning": {"trials": 3},
    }
    raw.update(overrides)
    return parse_spec(raw, base_dir=folder)


@pytest.fixture
def repository(home: Path) -> ModelRepository:
    return open_repository(Settings(home=home))


def test_train_register_load_predict(
    tmp_path: Path, iris_frame: pd.DataFrame, repository: ModelRepository
) -> None:
    spec = _iris_spec(tmp_path, iris_frame)
    result = train(spec, repository)

    assert result.version is not None and result.version.version == 1
    f1s = [o.validation["f1_macro"] for o in result.leaderboard]
    assert f1s == sorted(f1s, reverse=True)
    repository.set_alias("iris", "production", 1, reason="first release")
    version = repository.resolve_alias("iris", "production")
    assert version.version == 1 and "production" in version.aliases
    assert version.tags["layerops.dataset_sha256"] == dataset_sha256(iris_frame)
    assert version.tags["layerops.spec_sha256"] == spec.content_hash()

    bundle = repository.load_bundle("iris", "production")
    meta = bundle.metadata
    assert meta.classes == ["setosa", "versicolor", "virginica"]
    assert meta.feature_names() == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert meta.lineage.seed == 11 and "scikit-learn" in meta.lineage.libraries
    # iris is small: cross-validated, so the validation metrics come with their spread over folds
    assert set(meta.metrics) == {"validation", "validation_std", "test", "selection_test"}
    assert meta.latency["single_row_p50_ms"] > 0 and meta.lineage.fit_splits == ["train", "validation"]
    assert meta.reference_profile and len(meta.reference_rows) == 5

    rows = prepare_features(iris_frame.drop(columns=["species"]))
    native = bundle.model.predict_proba(rows)
    np.testing.assert_array_equal(native, result.winner.model.predict_proba(rows))

    assert meta.onnx.converted, meta.onnx.reason
    assert bundle.onnx_model is not None
    session = ort.InferenceSession(bundle.onnx_model, providers=["CPUExecutionProvider"])
    outputs = session.run(None, onnx_feeds(rows, meta.features, session))
    probabilities = next(o for o in outputs if getattr(o, "ndim", 0) == 2)
    assert np.max(np.abs(probabilities - native)) <= 1e-5


def test_same_spec_data_and_seed_reproduce(tmp_path: Path, iris_frame: pd.DataFrame) -> None:
    spec = _iris_spec(
        tmp_path,
        iris_frame,
        candidates=[
            {"name": "decision_tree"},
            {"name": "random_forest", "params": {"n_estimators": 20}},
            {"name": "xgboost", "params": {"n_estimators": 30}},
            {"name": "lightgbm", "params": {"n_estimators": 30}},
        ],
        tuning={"trials": 2},
    )
    first = train(spec, None)
    second = train(spec, None)
    quality = lambda r: [(o.name, o.params, o.validation, o.test) for o in r.leaderboard]  # noqa: E731
    assert quality(first) == quality(second)
    rows = prepare_features(iris_frame.drop(columns=["species"]))
    np.testing.assert_array_equal(
        first.winner.model.predict_proba(rows), second.winner.model.predict_proba(rows)
    )


def test_regression_with_categoricals(
    tmp_path: Path, mixed_frame: pd.DataFrame, repository: ModelRepository
) -> None:
    mixed_frame.to_csv(tmp_path / "mixed.csv", index=False)
    spec = parse_spec(
        {
            "name": "cost",
            "data": {"path": "mixed.csv"},
            "target": "cost",
            "candidates": [
                {"name": "baseline"},
                {"name": "linear"},
                {"name": "lightgbm", "params": {"n_estimators": 40}},
            ],
            "tuning": {"trials": 2},
        },
        base_dir=tmp_path,
    )
    result = train(spec, repository)
    assert result.task == "regression" and result.metric == "rmse"
    rmses = [o.validation["rmse"] for o in result.leaderboard]
    assert rmses == sorted(rmses)
    baseline = next(o for o in result.leaderboard if o.name == "baseline")
    assert result.winner.validation["rmse"] < baseline.validation["rmse"]
    bundle = repository.load_bundle("cost", 1)
    categories = {f.name: f.categories for f in bundle.metadata.features}
    assert categories["origin"] == ["east", "north", "south"]


def test_failed_training_registers_nothing(
    tmp_path: Path, iris_frame: pd.DataFrame, repository: ModelRepository
) -> None:
    one_class = iris_frame.assign(species="setosa")
    spec = _iris_spec(tmp_path, one_class)
    with pytest.raises(TrainingError, match="single class"):
        train(spec, repository)
    assert repository.list_models() == []
