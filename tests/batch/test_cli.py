"""`layerops batch-predict` end to end: the model's answers, rejects with reasons, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import layerops
from layerops.batch import parse_address
from layerops.errors import LayeropsError
from layerops.repository.factory import load_bundle_quickly
from layerops.settings import load_settings
from tests.batch.conftest import BAD_ROWS, FEATURES, MODEL, rows, run

pytestmark = pytest.mark.slow


def test_a_csv_is_scored_as_its_pipeline_scores_it_and_bad_rows_are_rejected_with_reasons(
    home: Path, tmp_path: Path
) -> None:
    rows(40, bad_every=2).to_csv(tmp_path / "in.csv", index=False)
    result = run(home, MODEL, "in.csv", "out", "--partition-rows", "16", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    bad = sorted(start + offset for start in (0, 20) for offset in BAD_ROWS)
    assert result.stdout.splitlines()[0].startswith(
        f"{MODEL} v1 (onnx): {40 - len(bad)} rows scored, {len(bad)} rejected; "
        "3 partitions written, 0 skipped; "
    )
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("*.parquet")) == [f"part-0000{i}.parquet" for i in range(3)]
    rejects = pd.read_parquet(out / "_rejects").sort_values("row_number", ignore_index=True)
    assert rejects["row_number"].tolist() == bad
    assert rejects["reason"].tolist() == [BAD_ROWS[n % 20][2] for n in bad]
    assert rejects["id"].tolist() == [str(n) for n in bad]  # the row as read: a CSV's text

    scored = pd.read_parquet(out).sort_values("row_number", ignore_index=True)
    good = [n for n in range(40) if n not in bad]
    assert scored["row_number"].tolist() == good
    assert scored.columns.tolist() == [
        "row_number", "id", *FEATURES, "prediction", "proba.no", "proba.yes", "model_name", "model_version"
    ]  # fmt: skip
    clean = rows(40).iloc[good].reset_index(drop=True)  # the same rows, before the bad cells
    pd.testing.assert_frame_equal(scored[["x1", "x2", "n", "flag"]], clean[["x1", "x2", "n", "flag"]])
    bundle = load_bundle_quickly(load_settings(home=home), MODEL, 1, native=True)
    proba = bundle.model.predict_proba(clean[FEATURES])  # the fitted pipeline itself
    assert scored["prediction"].tolist() == [bundle.metadata.classes[i] for i in proba.argmax(axis=1)]
    np.testing.assert_allclose(scored[["proba.no", "proba.yes"]].to_numpy(), proba, atol=1e-6)
    assert set(scored["model_name"]) == {MODEL} and set(scored["model_version"]) == {1}


def test_what_no_row_can_fix_is_one_error_line_before_anything_is_written(home: Path, tmp_path: Path) -> None:
    rows(10).drop(columns=["n", "color"]).to_csv(tmp_path / "in.csv", index=False)
    missing = run(home, f"{MODEL}@2", "in.csv", "out", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        "error: in.csv: the model needs columns n, color, which the input lacks (it has id, x1, x2, flag)"
    ]
    assert not (tmp_path / "out").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    rows(10).to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(LayeropsError) as foreign:
        layerops.batch_predict(MODEL, tmp_path / "in.csv", tmp_path / "mine", overwrite=True, home=home)
    assert str(foreign.value) == (
        f"OUTPUT {tmp_path / 'mine'} is not empty and was not written by batch-predict (it has no "
        "_manifest.json): choose an empty or new folder"
    )
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]  # --overwrite deletes none of it
    with pytest.raises(LayeropsError, match=r"bad --dask value 'local:0': use local:N"):
        parse_address("local:0")
    with pytest.raises(LayeropsError, match="columns it lacks: ident"):
        layerops.batch_predict(MODEL, tmp_path / "in.csv", tmp_path / "out", keep=["ident"], home=home)
    with pytest.raises(
        LayeropsError, match="column 'row_number' has the name of a column batch-predict writes"
    ):
        rows(10).assign(row_number=1).to_parquet(tmp_path / "in.parquet")
        layerops.batch_predict(MODEL, tmp_path / "in.parquet", tmp_path / "out", home=home)


def test_the_help_explains_every_option() -> None:
    from typer.testing import CliRunner

    from layerops.batch import DEFAULT_PARTITION_ROWS
    from layerops.cli import batch
    from layerops.cli.main import app

    assert batch.DEFAULT_PARTITION_ROWS == DEFAULT_PARTITION_ROWS  # repeated so that --help stays fast
    result = CliRunner().invoke(app, ["batch-predict", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    for option in ("--dask", "--partition-rows", "--keep", "--overwrite", "--quiet"):
        line = next(line for line in result.output.splitlines() if option in line)
        assert len(line.split(option, 1)[1].strip(" │")) > 20, f"{option} is not explained: {line}"
    assert "local:N" in result.output and "s3://" in result.output and "[default: 200000]" in result.output
