"""Lineage that rebuilds: `layerops.reproduce` trains a version again from what its lineage recorded."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

import layerops
from layerops.datasets import iris
from layerops.errors import DataError, SpecError
from layerops.repository.factory import open_repository
from layerops.settings import Settings

pytestmark = pytest.mark.slow

SPEC = {
    "name": "iris",
    "description": "iris, to be rebuilt",
    "data": {"path": "data/iris.csv"},
    "target": "species",
    "seed": 7,
    "cleaning": {"collinearity_threshold": None},
    "candidates": [
        {"name": "decision_tree"},
        {"name": "random_forest", "params": {"n_estimators": {"low": 10, "high": 30}}},
        {"name": "xgboost", "params": {"n_estimators": 20}},
    ],
    "tuning": {"trials": 3},
}


def _git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git repository with iris data and a spec file that git does not track yet."""
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    iris().to_csv(folder / "data" / "iris.csv", index=False)
    _git(folder, "init", "-q")
    _git(
        folder,
        "-c",
        "user.email=t@example.org",
        "-c",
        "user.name=t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "start",
    )
    (folder / "iris.yaml").write_text(yaml.safe_dump(SPEC))
    return folder


def test_a_reproduced_version_predicts_identically_and_exports_identical_onnx(
    project: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    first = layerops.train(project / "iris.yaml", home=home)
    lineage = first.bundle.metadata.lineage
    assert [c["name"] for c in lineage.spec["candidates"]] == [c["name"] for c in SPEC["candidates"]]
    assert lineage.spec["candidates"][2]["params"] == {"n_estimators": 20} and lineage.spec["seed"] == 7
    assert lineage.data_source == str(project / "data" / "iris.csv")
    assert lineage.git_dirty is True  # the spec is not committed
    assert lineage.python and lineage.platform and lineage.libraries["scikit-learn"]

    listed = layerops.models.list(home=home)
    assert listed["description"].tolist() == ["iris, to be rebuilt"]  # the spec's description
    assert layerops.models.show("iris", version=1, home=home).description == "iris, to be rebuilt"
    again = layerops.reproduce("iris@1", home=home)
    assert (first.version, again.version) == (1, 2) and again.winner == first.winner
    assert again.bundle.metadata.lineage.spec_sha256 == lineage.spec_sha256
    repository = open_repository(Settings(home=home))
    one, two = (repository.load_bundle("iris", v) for v in (1, 2))
    assert one.onnx_model is not None and one.onnx_model == two.onnx_model
    rows = iris().drop(columns="species")
    difference = np.abs(one.model.predict_proba(rows) - two.model.predict_proba(rows)).max()
    assert difference == 0.0
    for engine in ("onnx", "native"):
        before = layerops.load("iris@1", engine=engine, home=home).predict_proba(rows)
        after = layerops.load("iris@2", engine=engine, home=home).predict_proba(rows)
        assert np.abs(before.to_numpy() - after.to_numpy()).max() == 0.0


def test_changed_data_stops_a_reproduction_before_training(project: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    _git(project, "add", "iris.yaml")
    _git(project, "-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-q", "-m", "spec")
    first = layerops.train(project / "iris.yaml", home=home)
    assert first.bundle.metadata.lineage.git_dirty is False
    frame = iris()
    frame.loc[0, "sepal_length"] += 0.1
    frame.to_csv(project / "data" / "iris.csv", index=False)
    with pytest.raises(DataError, match="the data changed"):
        layerops.reproduce("iris@1", home=home)
    assert [v.version for v in open_repository(Settings(home=home)).list_versions("iris")] == [1]


def test_a_version_trained_on_a_dataframe_needs_the_same_rows(tmp_path: Path) -> None:
    home = tmp_path / "home"
    spec = {k: v for k, v in SPEC.items() if k != "data"} | {"candidates": [{"name": "decision_tree"}]}
    frame = iris()
    layerops.train(spec, data=frame, home=home)
    with pytest.raises(SpecError, match="in-memory DataFrame"):
        layerops.reproduce("iris@1", home=home)
    with pytest.raises(DataError, match="the data changed"):
        layerops.reproduce("iris@1", data=frame.iloc[1:], home=home)
    again = layerops.reproduce("iris@1", data=frame, home=home)
    assert again.version == 2
