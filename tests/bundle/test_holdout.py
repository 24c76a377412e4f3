"""The held-out test sample a bundle keeps for the promotion gate: raw features plus the target,
pinned by the manifest, capped and seeded; absent (None) for older bundles and `refit_all` models."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

import layerops
from layerops.bundle import bundle_digest, load_bundle, save_bundle
from layerops.errors import BundleError
from layerops.training import final
from tests.bundle.builders import IRIS_FEATURES, iris_bundle

SPEC = {
    "name": "iris",
    "target": "species",
    "seed": 3,
    "cleaning": {"collinearity_threshold": None},
    "candidates": [{"name": "decision_tree", "params": {"max_depth": 3}}],
    "tuning": {"trials": 1, "cv_folds": 0},
}


def test_the_holdout_round_trips_and_is_pinned_by_the_manifest(
    iris_frame: pd.DataFrame, tmp_path: Path
) -> None:
    holdout = iris_frame.sample(30, random_state=0).reset_index(drop=True)
    folder = tmp_path / "iris"
    digest = save_bundle(replace(iris_bundle(iris_frame), holdout=holdout), folder)

    loaded = load_bundle(folder, expected_digest=digest, native=False)
    assert loaded.holdout is not None
    pd.testing.assert_frame_equal(loaded.holdout, holdout, check_dtype=False)
    assert "holdout.parquet" in json.loads((folder / "manifest.json").read_text())["files"]
    assert sum(loaded.file_bytes.values()) == sum(p.stat().st_size for p in folder.iterdir())

    (folder / "holdout.parquet").write_bytes(b"PAR1 tampered")
    with pytest.raises(BundleError, match=r"holdout\.parquet does not match its SHA-256"):
        load_bundle(folder, native=False)
    assert bundle_digest(folder) == digest


def test_a_bundle_without_a_holdout_loads_with_none(iris_frame: pd.DataFrame, tmp_path: Path) -> None:
    save_bundle(iris_bundle(iris_frame), tmp_path / "old")
    assert load_bundle(tmp_path / "old", native=False).holdout is None


def test_training_keeps_a_seeded_sample_of_the_test_split(
    iris_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = layerops.train(SPEC, data=iris_frame, register=False, jobs=1)
    holdout = result.bundle.holdout

    assert holdout is not None and len(holdout) == 30  # the 20 % test split
    assert list(holdout.columns) == [*IRIS_FEATURES, "species"]
    assert set(holdout["species"]) <= set(result.bundle.metadata.classes or [])
    merged = holdout.merge(iris_frame, on=[*IRIS_FEATURES, "species"], how="left", indicator=True)
    assert (merged["_merge"] == "both").all()  # real rows with their true labels
    assert holdout[IRIS_FEATURES].dtypes.eq("float64").all()
    # the test split is what the model never fitted on: its reported test accuracy is measured there
    predicted = result.bundle.model.predict_proba(holdout[IRIS_FEATURES]).argmax(axis=1)
    labels = [result.bundle.metadata.classes[i] for i in predicted]  # type: ignore[index]
    accuracy = (pd.Series(labels) == holdout["species"]).mean()
    assert accuracy == pytest.approx(result.bundle.metadata.metrics["test"]["accuracy"])

    monkeypatch.setattr(final, "HOLDOUT_ROWS", 10)
    capped = layerops.train(SPEC, data=iris_frame, register=False, jobs=1).bundle.holdout
    again = layerops.train(SPEC, data=iris_frame, register=False, jobs=1).bundle.holdout
    assert capped is not None and len(capped) == 10
    pd.testing.assert_frame_equal(capped, again)


def test_a_model_fitted_on_every_row_keeps_no_holdout(iris_frame: pd.DataFrame) -> None:
    result = layerops.train(SPEC, data=iris_frame, register=False, refit_all=True, jobs=1)
    assert result.bundle.holdout is None


def test_a_regression_holdout_keeps_float_targets(mixed_frame: pd.DataFrame) -> None:
    spec = {**SPEC, "name": "cost", "target": "cost", "candidates": [{"name": "linear"}]}
    holdout = layerops.train(spec, data=mixed_frame, register=False, jobs=1).bundle.holdout
    assert holdout is not None and holdout["cost"].dtype == "float64"
    assert holdout["origin"].dropna().isin(["north", "south", "east"]).all()
