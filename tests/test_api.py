"""The Python API (`import layerops`): its docstring examples run as doctests on a real repository,
and what a notebook user relies on beyond them."""

from __future__ import annotations

import doctest
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import numpy as np
import pandas as pd
import pytest

import layerops
from layerops.errors import InputError, LayeropsError, NotFoundError
from tests.delivery.conftest import IRIS_ROWS, train_demo_models

pytestmark = pytest.mark.slow

# Run in this order: the models examples see the demo models only; training adds one.
DOCUMENTED = [
    "layerops",
    "layerops.api.models",
    "layerops.api.inference",
    "layerops.api.serving",
    "layerops.api.training",
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Demo models (iris, shipping; production → v1) in a home the API finds through LAYEROPS_HOME."""
    folder = tmp_path_factory.mktemp("api") / "home"
    train_demo_models(folder)
    saved = {k: v for k, v in os.environ.items() if k.startswith("LAYEROPS_")}
    for key in saved:
        del os.environ[key]
    os.environ["LAYEROPS_HOME"] = str(folder)
    yield folder
    for key in [k for k in os.environ if k.startswith("LAYEROPS_")]:
        del os.environ[key]
    os.environ.update(saved)


def test_the_docstring_examples_run(home: Path) -> None:
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for name in DOCUMENTED:
        module: ModuleType = importlib.import_module(name)
        result = doctest.testmod(module, extraglobs={"layerops": layerops}, optionflags=flags, report=True)
        assert result.attempted > 0, f"{name} has no examples"
        assert result.failed == 0, f"{name}: {result.failed} example(s) failed (see the output above)"


def test_load_predicts_the_labels_the_server_answers(home: Path) -> None:
    model = layerops.load("iris@1")
    frame = pd.DataFrame(IRIS_ROWS)
    labels = model.predict(frame)
    with layerops.serve(["iris"]) as server:
        answer = httpx.post(f"{server.url}/models/iris/predict", json=IRIS_ROWS).json()
    assert labels.tolist() == answer["predictions"]
    proba = model.predict_proba(frame)
    assert proba.columns.tolist() == model.classes
    np.testing.assert_allclose(
        proba.to_numpy(), [[p[c] for c in model.classes] for p in answer["probabilities"]]
    )
    assert model.engine == "onnx" and layerops.load("iris", engine="native").engine == "native"
    assert layerops.load("iris", engine="native").predict(frame).tolist() == labels.tolist()


def test_a_frame_with_extra_columns_and_missing_values_is_scored_like_json(home: Path) -> None:
    shipping = layerops.load("shipping")
    optional = [f.name for f in shipping.schema if not f.required]
    row = {f.name: (None if f.name in optional else _typical(f)) for f in shipping.schema}
    frame = pd.DataFrame([row, row]).assign(cost=1.0, request="abc")  # the target and an id column
    values = shipping.predict(frame)
    assert values.dtype == np.float64 and values.shape == (2,) and values[0] == values[1]
    assert shipping.predict(row).tolist() == values[:1].tolist()  # one row as a mapping
    with pytest.raises(InputError, match="regressor"):
        shipping.predict_proba(frame)


def test_bad_input_and_unknown_models_are_clear_errors(home: Path) -> None:
    model = layerops.load("iris")
    with pytest.raises(InputError, match=r"sepal_length\[0\]: must be a number"):
        model.predict(pd.DataFrame([{**IRIS_ROWS[0], "sepal_length": "long"}]))
    with pytest.raises(InputError, match="empty"):
        model.predict(pd.DataFrame())
    with pytest.raises(NotFoundError):
        layerops.load("iris@staging-nowhere")
    with pytest.raises(InputError, match="bad model reference"):
        layerops.load("iris@")


def test_serve_stops_and_frees_its_port(home: Path) -> None:
    server = layerops.serve(["iris"])
    url = server.url
    assert httpx.get(f"{url}/health/ready").status_code == 200
    server.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health/ready", timeout=2)
    with pytest.raises(LayeropsError, match="iris@nowhere"):
        layerops.serve(["iris@nowhere"])


def test_import_layerops_does_not_import_the_ml_stack() -> None:
    heavy = "('sklearn', 'mlflow', 'pandas', 'fastapi')"
    code = f"import sys; import layerops; print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _typical(feature: object) -> object:
    if getattr(feature, "dtype", None) == "category":
        return (getattr(feature, "categories", None) or ["x"])[0]
    low = getattr(feature, "min", None)
    return 1.0 if low is None else float(low)
