"""Bundle folders: round trips, and refusal of tampered files, unsafe types and wrong digests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightgbm
import numpy as np
import pandas as pd
import pytest
import xgboost
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from layerops.bundle import ModelBundle, bundle_digest, load_bundle, save_bundle
from layerops.errors import BundleError
from tests.bundle.builders import IRIS_FEATURES, iris_bundle, make_metadata


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rewrite_manifest(folder: Path, **changes: object) -> None:
    """Edit manifest.json as an attacker would (the per-file hashes stay consistent)."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


@pytest.fixture
def saved_iris(iris_frame: pd.DataFrame, tmp_path: Path) -> Path:
    """An iris forest bundle saved in tmp_path/iris (needs `sklearn.tree._tree.Tree` trusted)."""
    folder = tmp_path / "iris"
    save_bundle(iris_bundle(iris_frame, forest=True), folder)
    return folder


def test_mixed_pipeline_round_trip(mixed_frame: pd.DataFrame, tmp_path: Path) -> None:
    features = mixed_frame.drop(columns="cost")
    preprocess = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["length", "weight"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["origin", "service"]),
        ]
    )
    model = Pipeline(
        [("prep", preprocess), ("forest", RandomForestRegressor(n_estimators=8, random_state=0))]
    )
    model.fit(features, mixed_frame["cost"])
    metadata = make_metadata(
        "cost",
        mixed_frame,
        "cost",
        candidate="random_forest",
        classes=None,
        categorical=("origin", "service"),
    )
    folder = tmp_path / "cost"

    digest = save_bundle(ModelBundle(model=model, metadata=metadata, onnx_model=b"onnx-bytes"), folder)
    loaded = load_bundle(folder, expected_digest=digest)

    assert digest == bundle_digest(folder) == _sha256(folder / "manifest.json")
    assert loaded.metadata == metadata
    assert loaded.onnx_model == b"onnx-bytes"
    np.testing.assert_array_equal(loaded.model.predict(features), model.predict(features))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert "sklearn.tree._tree.Tree" in manifest["trusted_types"]
    assert set(manifest["files"]) == {"metadata.json", "model.skops", "model.onnx"}
    assert manifest["files"]["model.skops"] == _sha256(folder / "model.skops")


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_boosted_classifier_round_trip(library: str, iris_frame: pd.DataFrame, tmp_path: Path) -> None:
    features = iris_frame[IRIS_FEATURES]
    labels = iris_frame["species"].astype("category").cat.codes.to_numpy()
    model = (
        xgboost.XGBClassifier(n_estimators=5, max_depth=2)
        if library == "xgboost"
        else lightgbm.LGBMClassifier(n_estimators=5, verbose=-1)
    )
    model.fit(features, labels)
    metadata = make_metadata("iris", iris_frame, "species", candidate=library, classes=["0", "1", "2"])

    save_bundle(ModelBundle(model=model, metadata=metadata), tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")

    np.testing.assert_allclose(loaded.model.predict_proba(features), model.predict_proba(features))


def test_native_false_skips_the_model(saved_iris: Path) -> None:
    loaded = load_bundle(saved_iris, native=False)

    assert loaded.model is None
    assert loaded.metadata.name == "iris"
    assert loaded.onnx_model is None


def test_saving_into_a_non_empty_folder_is_refused(iris_frame: pd.DataFrame, tmp_path: Path) -> None:
    (tmp_path / "other.txt").write_text("x")

    with pytest.raises(BundleError, match="not an empty folder"):
        save_bundle(iris_bundle(iris_frame), tmp_path)


def test_an_unsafe_model_is_not_saved(iris_frame: pd.DataFrame, tmp_path: Path) -> None:
    bundle = iris_bundle(iris_frame)
    bundle.model.steps.append(("hook", _Custom()))

    with pytest.raises(BundleError, match="outside the trusted libraries"):
        save_bundle(bundle, tmp_path / "b")
    assert not (tmp_path / "b").exists()


class _Custom:
    """A type from a module the trust policy does not know."""


@pytest.mark.parametrize("name", ["model.skops", "metadata.json"])
def test_a_tampered_file_is_refused(saved_iris: Path, name: str) -> None:
    path = saved_iris / name
    path.write_bytes(path.read_bytes() + b" ")

    with pytest.raises(BundleError, match=name.replace(".", r"\.")):
        load_bundle(saved_iris)


def test_a_missing_file_is_refused(saved_iris: Path) -> None:
    (saved_iris / "model.skops").unlink()

    with pytest.raises(BundleError, match=r"model\.skops is missing"):
        load_bundle(saved_iris)


@pytest.mark.parametrize(
    "unsafe", ["builtins.eval", "os.system", "posix.system", "numpy.load", "subprocess.Popen"]
)
def test_a_manifest_trusting_unsafe_types_is_refused(saved_iris: Path, unsafe: str) -> None:
    trusted = json.loads((saved_iris / "manifest.json").read_text())["trusted_types"]
    _rewrite_manifest(saved_iris, trusted_types=[*trusted, unsafe])

    with pytest.raises(BundleError, match=unsafe.replace(".", r"\.")):
        load_bundle(saved_iris)


def test_a_manifest_trusting_too_little_is_refused(saved_iris: Path) -> None:
    _rewrite_manifest(saved_iris, trusted_types=[])

    with pytest.raises(BundleError, match=r"does not trust: .*sklearn\.tree\._tree\.Tree"):
        load_bundle(saved_iris)


def test_an_expected_digest_mismatch_is_refused(saved_iris: Path) -> None:
    digest = bundle_digest(saved_iris)
    load_bundle(saved_iris, expected_digest=digest, native=False)

    with pytest.raises(BundleError, match="changed after registration"):
        load_bundle(saved_iris, expected_digest="f" * 64)


def test_metadata_that_breaks_the_schema_is_refused(saved_iris: Path) -> None:
    metadata = json.loads((saved_iris / "metadata.json").read_text())
    metadata["task"] = "ranking"
    (saved_iris / "metadata.json").write_text(json.dumps(metadata))
    files = json.loads((saved_iris / "manifest.json").read_text())["files"]
    _rewrite_manifest(saved_iris, files={**files, "metadata.json": _sha256(saved_iris / "metadata.json")})

    with pytest.raises(BundleError, match=r"metadata\.json is invalid at task"):
        load_bundle(saved_iris)


def test_a_manifest_that_is_not_json_is_refused(saved_iris: Path) -> None:
    (saved_iris / "manifest.json").write_text("{not json")

    with pytest.raises(BundleError, match=r"manifest\.json is not valid JSON"):
        load_bundle(saved_iris)
