"""The native pipeline scores where ONNX Runtime does not: a regressor without an export, and a
classifier whose export is not trusted (the same answers within ONNX's float tolerance)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from layerops.batch import BatchJob, prepare
from layerops.bundle import ModelBundle, OnnxInfo
from layerops.repository.factory import load_bundle_quickly
from layerops.settings import load_settings
from tests.batch.conftest import MODEL, rows
from tests.bundle.builders import make_metadata


def test_a_regressor_without_onnx_scores_with_its_pipeline(mixed_frame: pd.DataFrame, tmp_path: Path) -> None:
    numeric = make_pipeline(SimpleImputer(), "passthrough")
    pipeline = make_pipeline(
        ColumnTransformer(
            [("num", numeric, ["length", "weight"]), ("cat", OneHotEncoder(), ["origin", "service"])]
        ),
        LinearRegression(),
    ).fit(mixed_frame.drop(columns="cost"), mixed_frame["cost"])
    metadata = make_metadata(
        "cost", mixed_frame, "cost", candidate="linear", classes=None, categorical=("origin", "service")
    )
    model, scorer = prepare(ModelBundle(model=pipeline, metadata=metadata), "cost", 3)
    assert (model.engine, model.note) == ("native", "no validated ONNX export (not attempted)")
    inputs = mixed_frame.drop(columns="cost").assign(id=[f"r{i}" for i in range(len(mixed_frame))])
    inputs.iloc[:250].to_parquet(tmp_path / "a.parquet")
    inputs.iloc[250:].to_parquet(tmp_path / "b.parquet")
    summary = BatchJob(model, str(tmp_path), str(tmp_path / "out"), partition_rows=100, keep=["id"]).run(
        scorer
    )
    assert (summary.partitions_written, summary.rows_rejected) == (5, 10)  # 100+100+50 and 100+50
    scored = pd.read_parquet(tmp_path / "out").sort_values("row_number", ignore_index=True)
    assert scored.columns.tolist() == ["row_number", "id", "prediction", "model_name", "model_version"]
    good = mixed_frame["length"].notna().to_numpy()  # `length` is required: its missing rows are rejected
    assert scored["id"].tolist() == inputs["id"][good].tolist()
    expected = pipeline.predict(mixed_frame.drop(columns="cost")[good])
    np.testing.assert_allclose(scored["prediction"], expected, rtol=1e-12)


@pytest.mark.slow
def test_a_classifier_whose_export_is_not_trusted_scores_like_its_export(home: Path, tmp_path: Path) -> None:
    settings = load_settings(home=home)
    bundle = load_bundle_quickly(settings, MODEL, 1, native=True)
    untrusted = bundle.metadata.model_copy(update={"onnx": OnnxInfo(converted=False, reason="refused")})
    native, scorer = prepare(ModelBundle(model=bundle.model, metadata=untrusted), MODEL, 1)
    onnx, _ = prepare(bundle, MODEL, 1)
    assert (native.engine, onnx.engine) == ("native", "onnx")
    rows(200, bad_every=4).to_csv(tmp_path / "in.csv", index=False)
    BatchJob(native, str(tmp_path / "in.csv"), str(tmp_path / "native")).run(scorer)
    BatchJob(onnx, str(tmp_path / "in.csv"), str(tmp_path / "onnx")).run()
    by_native, by_onnx = pd.read_parquet(tmp_path / "native"), pd.read_parquet(tmp_path / "onnx")
    assert by_native["prediction"].tolist() == by_onnx["prediction"].tolist()
    np.testing.assert_allclose(by_native["proba.yes"], by_onnx["proba.yes"], atol=1e-6)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "native/_rejects"), pd.read_parquet(tmp_path / "onnx/_rejects")
    )
