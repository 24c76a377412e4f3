"""`layerops retrain NAME --version V --reproduce`: a shell over `layerops.reproduce`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

import layerops
from tests.cli.conftest import layerops as run_layerops


@pytest.mark.slow
def test_retrain_reproduces_a_version_and_refuses_changed_data(registry: Path, tmp_path: Path) -> None:
    shutil.copy(registry / "spec.yaml", tmp_path / "spec.yaml")
    shutil.copy(registry / "data.csv", tmp_path / "data.csv")
    layerops.train(tmp_path / "spec.yaml", alias="production", home=tmp_path / "home")

    result = run_layerops(
        "--home", "home", "retrain", "iris", "--version", "1", "--reproduce", "-q", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "reproduced iris@1 as iris version 2" in result.stdout
    first, second = (layerops.models.details("iris", version=v, home=tmp_path / "home") for v in (1, 2))
    assert second.lineage["data sha256"] == first.lineage["data sha256"]
    assert second.metrics == first.metrics  # same data, spec and seed: the same model

    frame = pd.read_csv(tmp_path / "data.csv")
    frame.loc[0, "sepal_length"] += 1.0
    frame.to_csv(tmp_path / "data.csv", index=False)
    result = run_layerops(
        "--home", "home", "retrain", "iris", "--alias", "production", "--reproduce", cwd=tmp_path
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the data changed:"), result.stderr
    assert "nothing was trained" in lines[0]
    assert [v.version for v in layerops.models.versions("iris", home=tmp_path / "home")] == [2, 1]


def test_retrain_needs_reproduce_and_one_version(registry: Path) -> None:
    for args in (["retrain", "iris", "--version", "1"], ["retrain", "iris", "--reproduce"]):
        result = run_layerops("--home", "home", *args, cwd=registry)
        assert result.returncode == 2, result.stderr
        assert "Usage: layerops retrain" in result.stderr
