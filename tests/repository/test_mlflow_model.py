"""The registered version is a standard MLflow model: `models:/NAME@ALIAS` loads it with MLflow's own
tools and predicts what `/invocations` answers, while layerops still loads the bundle inside it."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from layerops.bundle import ModelBundle, bundle_digest, load_bundle, save_bundle
from layerops.datasets import iris, shipping
from layerops.errors import BundleError
from layerops.repository import RunInfo, TrainingRun, _runs
from layerops.repository.factory import open_repository
from layerops.repository.mlflow_pyfunc import BundleModel, OnnxGraph
from layerops.repository.mlflow_repo import (
    DIGEST_TAG,
    KIND_TAG,
    LAYOUT_TAG,
    MLFLOW_MODEL_LAYOUT,
    MLFLOW_MODEL_TAG,
    RUN_TAG,
    MlflowRepository,
    bundle_uri,
)
from layerops.settings import Settings
from layerops.spec import parse_spec
from layerops.training.pipeline import train
from tests.bundle.builders import IRIS_FEATURES, iris_bundle


def _local(uri: str) -> Path:
    return Path(unquote(urlsplit(uri).path))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> MlflowRepository:
    """A home with a trained iris classifier and shipping regressor (categoricals) in production."""
    home = tmp_path_factory.mktemp("standard-models")
    iris().to_csv(home / "iris.csv", index=False)
    shipping(300, seed=2).to_csv(home / "shipping.csv", index=False)
    _flags().to_csv(home / "flags.csv", index=False)
    repository = open_repository(Settings(home=home))
    assert isinstance(repository, MlflowRepository)
    for name, target in (("iris", "species"), ("shipping", "cost"), ("flags", "species")):
        spec = {
            "name": name,
            "data": {"path": f"{name}.csv"},
            "target": target,
            "cleaning": {"collinearity_threshold": None},
            "candidates": [{"name": "linear"}],
        }
        result = train(parse_spec(spec, base_dir=home), repository)
        assert result.version is not None
        repository.set_alias(name, "production", result.version.version, reason="test")
    return repository


def _flags() -> pd.DataFrame:
    """Iris with a boolean feature."""
    frame = iris()
    frame["long_petals"] = frame["petal_length"] > 4.5
    return frame[["sepal_width", "long_petals", "species"]]


@pytest.fixture
def registry(trained: MlflowRepository, monkeypatch: pytest.MonkeyPatch) -> MlflowRepository:
    """The trained repository, which `models:/` URIs resolve against."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained.tracking_uri)
    return trained


def _sample(frame: pd.DataFrame, bundle: ModelBundle) -> pd.DataFrame:
    return frame[bundle.metadata.feature_names()].sample(40, random_state=3)


def test_models_uri_loads_the_production_classifier_and_predicts_labels(registry: MlflowRepository) -> None:
    served = mlflow.pyfunc.load_model("models:/iris@production")
    bundle = registry.load_bundle("iris", "production")
    rows = _sample(iris(), bundle)

    predicted = served.predict(rows)

    native = bundle.model.predict_proba(rows).argmax(axis=1)
    assert list(predicted) == [bundle.metadata.classes[i] for i in native]  # type: ignore[index]
    assert served.get_raw_model().engine == "onnx"
    assert served.metadata.get_input_schema().input_names() == bundle.metadata.feature_names()
    assert served.metadata.get_output_schema().to_dict() == [{"type": "string", "required": True}]
    assert served.metadata.metadata["layerops_classes"] == bundle.metadata.classes


def test_models_uri_loads_a_regressor_with_categoricals_and_predicts_values(
    registry: MlflowRepository,
) -> None:
    served = mlflow.pyfunc.load_model("models:/shipping@production")
    bundle = registry.load_bundle("shipping", "production")
    rows = _sample(shipping(300, seed=2), bundle)

    predicted = np.asarray(served.predict(rows))

    assert predicted.dtype == np.float64
    np.testing.assert_allclose(predicted, bundle.model.predict(rows), rtol=1e-5, atol=1e-4)
    assert any(f.dtype == "category" for f in bundle.metadata.features)


def test_an_onnx_export_that_misses_the_reference_outputs_is_not_used(registry: MlflowRepository) -> None:
    bundle = registry.load_bundle("iris", "production")
    rows = bundle.metadata.reference_rows
    shifted = [{**row, "probabilities": [p + 1e-3 for p in row["probabilities"]]} for row in rows]
    off = ModelBundle(
        bundle.model, bundle.metadata.model_copy(update={"reference_rows": shifted}), bundle.onnx_model
    )

    assert OnnxGraph.checked(bundle) is not None
    assert OnnxGraph.checked(off) is None
    assert BundleModel(off, None).engine == "native"


def test_boolean_features_take_booleans(registry: MlflowRepository) -> None:
    served = mlflow.pyfunc.load_model("models:/flags@production")
    bundle = registry.load_bundle("flags", "production")
    rows = _flags().drop(columns=["species"]).sample(40, random_state=3)

    predicted = served.predict(rows)

    assert [f.dtype for f in bundle.metadata.features] == ["float", "bool"]
    native = bundle.model.predict_proba(rows.astype("float64")).argmax(axis=1)
    assert list(predicted) == [bundle.metadata.classes[i] for i in native]  # type: ignore[index]
    assert served.metadata.get_input_schema().input_types_dict()["long_petals"].name == "boolean"


def test_the_registered_source_is_the_mlflow_model_with_the_bundle_inside(
    registry: MlflowRepository,
) -> None:
    version = registry.resolve_alias("iris", "production")
    source = _local(version.source)

    assert version.tags[LAYOUT_TAG] == MLFLOW_MODEL_LAYOUT
    assert version.tags[MLFLOW_MODEL_TAG] == version.source
    names = {p.name for p in source.iterdir()}
    names.discard("registered_model_meta")  # MLflow writes it after a `models:/` load of a local folder
    assert names == {"MLmodel", "bundle", "conda.yaml", "python_env.yaml", "requirements.txt"}
    assert _local(bundle_uri(version)) == source / "bundle"
    assert bundle_digest(source / "bundle") == version.tags[DIGEST_TAG]
    mlmodel = yaml.safe_load((source / "MLmodel").read_text())
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "layerops.repository.mlflow_pyfunc"
    assert mlmodel["flavors"]["python_function"]["data"] == "bundle"
    assert mlmodel["metadata"]["layerops_bundle_digest"] == version.tags[DIGEST_TAG]
    assert (source / "requirements.txt").read_text().startswith("layerops==")


def test_the_sklearn_flavour_loads_the_bundles_own_pipeline(registry: MlflowRepository) -> None:
    pipeline = mlflow.sklearn.load_model("models:/shipping@production")
    bundle = registry.load_bundle("shipping", "production")
    rows = _sample(shipping(300, seed=2), bundle)

    np.testing.assert_array_equal(pipeline.predict(rows), bundle.model.predict(rows))


@pytest.fixture
def forest_dir(iris_frame: pd.DataFrame, tmp_path: Path) -> Path:
    """An iris random-forest bundle (no ONNX): skops must be told to trust `sklearn.tree._tree.Tree`."""
    folder = tmp_path / "forest"
    save_bundle(iris_bundle(iris_frame, forest=True), folder)
    return folder


def test_without_onnx_the_native_pipeline_predicts_the_labels(
    repo: MlflowRepository, training_run: TrainingRun, forest_dir: Path, iris_frame: pd.DataFrame
) -> None:
    version = repo.register("iris", repo.log_training(training_run, forest_dir))
    served = mlflow.pyfunc.load_model(version.source)
    bundle = repo.load_bundle("iris", version.version)
    rows = iris_frame[IRIS_FEATURES].sample(40, random_state=3)

    assert served.get_raw_model().engine == "native"
    assert list(served.predict(rows)) == list(bundle.model.predict(rows))


def test_the_sklearn_flavour_is_configured_as_mlflow_sklearn_save_model_writes_it(
    repo: MlflowRepository, training_run: TrainingRun, forest_dir: Path, tmp_path: Path
) -> None:
    """Guards the hand-written MLmodel against a change in MLflow's sklearn flavour layout."""
    version = repo.register("iris", repo.log_training(training_run, forest_dir))
    ours = _local(version.source)
    manifest = json.loads((forest_dir / "manifest.json").read_text())
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

    expected, actual = mlmodel(theirs)["flavors"]["sklearn"], mlmodel(ours)["flavors"]["sklearn"]
    assert actual.keys() == expected.keys()
    assert {key for key in expected if actual[key] != expected[key]} == {"pickled_model"}
    assert actual["pickled_model"] == "bundle/model.skops"
    assert "sklearn.tree._tree.Tree" in actual["skops_trusted_types"]
    assert not list(ours.rglob("*.pkl"))
    digest = hashlib.sha256((forest_dir / "model.skops").read_bytes()).hexdigest()
    assert hashlib.sha256((ours / "bundle" / "model.skops").read_bytes()).hexdigest() == digest


def test_the_pyfunc_loader_refuses_a_tampered_bundle(
    repo: MlflowRepository, training_run: TrainingRun, forest_dir: Path
) -> None:
    version = repo.register("iris", repo.log_training(training_run, forest_dir))
    bundle = _local(version.source) / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["trusted_types"].append("sklearn.tree._classes.DecisionTreeRegressor")
    (bundle / "manifest.json").write_text(json.dumps(manifest))  # consistent, but not the recorded digest

    with pytest.raises(BundleError, match="changed after registration"):
        mlflow.pyfunc.load_model(version.source)
    (bundle / "model.skops").write_bytes(b"not a skops file")
    with pytest.raises(BundleError, match=r"model\.skops does not match"):
        BundleModel.load(bundle)


def _log_the_old_way(client: MlflowClient, bundle_dir: Path, artifacts: Path) -> RunInfo:
    """A training run as layerops logged it before the MLflow model layout: the bundle alone."""
    experiment = client.create_experiment("iris", artifact_location=artifacts.as_uri())
    digest = bundle_digest(bundle_dir)
    run = client.create_run(experiment, tags={KIND_TAG: "pipeline", DIGEST_TAG: digest}, run_name="iris")
    client.log_artifacts(run.info.run_id, str(bundle_dir), "bundle")
    client.set_terminated(run.info.run_id, "FINISHED")
    uri = f"{run.info.artifact_uri}/bundle"
    return RunInfo(run_id=run.info.run_id, experiment_id=experiment, bundle_uri=uri)


def test_versions_registered_with_the_old_layout_still_load(
    repo: MlflowRepository, tracking_uri: str, bundle_dir: Path, bundle: ModelBundle, tmp_path: Path
) -> None:
    client = MlflowClient(tracking_uri)
    old = _log_the_old_way(client, bundle_dir, tmp_path / "old-artifacts")
    client.create_registered_model("iris")
    tags = {KIND_TAG: "pipeline", DIGEST_TAG: bundle_digest(bundle_dir), RUN_TAG: old.run_id}
    client.create_model_version("iris", old.bundle_uri, run_id=old.run_id, tags=tags)
    again = repo.register("iris", old)  # an old run registered by this layerops

    for number in (1, 2):
        version = repo.get_version("iris", number)
        assert version.source == old.bundle_uri
        assert LAYOUT_TAG not in version.tags
        loaded = repo.load_bundle("iris", number)
        assert loaded.metadata == bundle.metadata
    assert again.version == 2


def test_a_failed_mlflow_model_still_logs_and_registers_the_bundle_alone(
    repo: MlflowRepository,
    training_run: TrainingRun,
    bundle_dir: Path,
    bundle: ModelBundle,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(*args: object) -> None:
        raise RuntimeError("this flavour cannot save the model")

    monkeypatch.setattr(_runs, "save_mlflow_model", refuse)
    with caplog.at_level(logging.WARNING, logger=_runs.__name__):
        info = repo.log_training(training_run, bundle_dir)
        version = repo.register("iris", info)

    assert MLFLOW_MODEL_TAG not in version.tags
    assert LAYOUT_TAG not in version.tags
    assert version.source == info.bundle_uri
    assert info.bundle_uri.endswith("/bundle")
    assert "this flavour cannot save the model" in caplog.text
    assert repo.load_bundle("iris", version.version).metadata.name == bundle.metadata.name
