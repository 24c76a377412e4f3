"""The reference sample a bundle keeps for drift tests: capped, deterministic, pinned by the manifest."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from layerops.bundle import bundle_digest, load_bundle, save_bundle
from layerops.bundle.profile import SAMPLE_ROWS, build_profile, infer_schema, reference_sample
from layerops.errors import BundleError
from tests.bundle.builders import iris_bundle


def _frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "n": rng.integers(0, 50, size=rows),
            "c": rng.choice(["a", "b", None], size=rows),
        }
    )


def test_the_sample_is_capped_deterministic_and_typed_for_drift_tests() -> None:
    frame = _frame(SAMPLE_ROWS + 700)
    features = infer_schema(frame)

    first = reference_sample(frame, features, seed=7)
    again = reference_sample(frame, features, seed=7)
    other = reference_sample(frame, features, seed=8)

    assert len(first) == SAMPLE_ROWS
    pd.testing.assert_frame_equal(first, again)
    assert not first["x"].equals(other["x"])
    assert first["x"].dtype == "float64" and first["n"].dtype == "float64"
    assert set(first["c"].dropna()) <= {"a", "b"} and first["c"].isna().any()
    # every sampled value is a real value of the frame
    assert first["x"].isin(frame["x"]).all()
    small = reference_sample(frame.head(10), features)
    assert small["x"].tolist() == frame["x"].head(10).tolist()


def test_a_regression_profile_keeps_a_capped_sample_of_predictions() -> None:
    frame = _frame(50)
    predictions = np.arange(SAMPLE_ROWS + 10, dtype=float)
    profile = build_profile(frame, infer_schema(frame), predictions[:50], task="regression", classes=None)
    assert profile["predictions"]["sample"] == predictions[:50].tolist()
    big = build_profile(
        pd.concat([frame] * 101, ignore_index=True).head(SAMPLE_ROWS + 10),
        infer_schema(frame),
        predictions,
        task="regression",
        classes=None,
    )
    assert len(big["predictions"]["sample"]) == SAMPLE_ROWS


def test_the_reference_round_trips_and_is_pinned_by_the_manifest(
    iris_frame: pd.DataFrame, tmp_path: Path
) -> None:
    bundle = iris_bundle(iris_frame)
    features = bundle.metadata.features
    reference = reference_sample(iris_frame, features)
    folder = tmp_path / "iris"
    digest = save_bundle(replace(bundle, reference=reference), folder)

    loaded = load_bundle(folder, expected_digest=digest, native=False)
    assert loaded.reference is not None
    pd.testing.assert_frame_equal(loaded.reference, reference)
    assert "reference.parquet" in json.loads((folder / "manifest.json").read_text())["files"]

    (folder / "reference.parquet").write_bytes(b"PAR1 tampered")
    with pytest.raises(BundleError, match=r"reference\.parquet does not match its SHA-256"):
        load_bundle(folder, native=False)
    assert bundle_digest(folder) == digest  # the manifest itself was not touched


def test_a_bundle_without_reference_loads_with_none(iris_frame: pd.DataFrame, tmp_path: Path) -> None:
    save_bundle(iris_bundle(iris_frame), tmp_path / "old")
    assert load_bundle(tmp_path / "old", native=False).reference is None
