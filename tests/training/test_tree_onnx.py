"""The vectorised tree converter: skl2onnx's graphs and outputs, scikit-learn's predictions."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
from skl2onnx.common.tree_ensemble import sklearn_threshold
from skl2onnx.operator_converters.decision_tree import convert_sklearn_decision_tree_regressor
from skl2onnx.operator_converters.random_forest import convert_sklearn_random_forest_regressor_converter
from skl2onnx.shape_calculators.ensemble_shapes import calculate_tree_regressor_output_shapes
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor, RandomForestRegressor
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from layerops.spec import Task
from layerops.training._onnx_converters import DoubleTrees
from layerops.training._tree_onnx import sklearn_thresholds, tree_head
from layerops.training.candidates import make_estimator
from layerops.training.export import TARGET_OPSET, _chain, _convert, _convert_preprocess, export_onnx
from tests.training.test_export import TOLERANCE, pipeline, run_onnx

Data = tuple[np.ndarray, np.ndarray]


def ties() -> Data:
    """Features with few distinct values (many rows sit on either side of every threshold) and
    values no float32 holds exactly, so thresholds need skl2onnx's rounding rules."""
    rng = np.random.default_rng(3)
    steps = rng.integers(0, 6, size=(600, 3)).astype(np.float64)
    fine = np.round(rng.normal(0.0, 1.0, size=(600, 2)), 3) / 3.0 + 1e-9
    x = np.hstack([steps, fine])
    return x, steps.sum(axis=1) * 0.7 + fine[:, 0] * 4.0 + rng.normal(0.0, 0.1, 600)


CLASSIFICATION: dict[str, Callable[[], Data]] = {
    "iris": lambda: load_iris(return_X_y=True),
    "wine": lambda: load_wine(return_X_y=True),
    "breast_cancer": lambda: load_breast_cancer(return_X_y=True),
    "ties": lambda: (ties()[0], (ties()[1] > np.median(ties()[1])).astype(int)),
    "iris_names": lambda: (load_iris().data, load_iris().target_names[load_iris().target].astype(object)),
}
REGRESSION: dict[str, Callable[[], Data]] = {
    "diabetes": lambda: load_diabetes(return_X_y=True),
    "ties": ties,
}


def candidates(task: Task) -> dict[str, Any]:
    """Every scikit-learn tree candidate as the training layer builds it, plus the edge shapes."""
    extra = ExtraTreesClassifier if task == "classification" else ExtraTreesRegressor
    return {
        "decision_tree": make_estimator("decision_tree", task, {}, seed=0),
        "decision_tree_depth_1": make_estimator("decision_tree", task, {"max_depth": 1}, seed=0),
        "random_forest": make_estimator("random_forest", task, {"n_estimators": 15, "max_depth": 6}, seed=0),
        "random_forest_unbounded": make_estimator(
            "random_forest", task, {"n_estimators": 15, "max_depth": None}, seed=0
        ),
        "extra_trees": extra(n_estimators=10, random_state=0),
    }


def stock_head(estimator: Any, width: int, task: Task) -> onnx.ModelProto:
    """The head export built before the vectorised converter: skl2onnx's own tree converters."""
    if task == "classification":
        return convert_sklearn(
            estimator,
            initial_types=[("features", FloatTensorType([None, width]))],
            target_opset=TARGET_OPSET,
            options={id(estimator): {"zipmap": False}},
        )
    forest = hasattr(estimator, "estimators_")
    convert = (
        convert_sklearn_random_forest_regressor_converter
        if forest
        else convert_sklearn_decision_tree_regressor
    )
    return convert_sklearn(
        estimator,
        initial_types=[("features", DoubleTensorType([None, width]))],
        target_opset=TARGET_OPSET,
        custom_conversion_functions={type(estimator): lambda s, o, c: convert(s, o, DoubleTrees(c))},
        custom_shape_calculators={type(estimator): calculate_tree_regressor_output_shapes},
    )


def nodes(model: onnx.ModelProto) -> list[bytes]:
    """The graph's nodes as bytes, names left out (skl2onnx numbers its nodes)."""
    out = []
    for node in model.graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = ""
        out.append(copy.SerializeToString())
    return out


def run(head: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    """Every output of a head graph on `x`, fed in the graph's own feature type."""
    session = ort.InferenceSession(head.SerializeToString(), providers=["CPUExecutionProvider"])
    dtype = np.float32 if session.get_inputs()[0].type == "tensor(float)" else np.float64
    return list(session.run(None, {"features": x.astype(dtype)}))


def boundary_rows(estimator: Any, x: np.ndarray, limit: int = 400) -> np.ndarray:
    """Rows sitting on split thresholds, a double ulp either side, and on the float32 neighbours."""
    trees = [e.tree_ for e in getattr(estimator, "estimators_", [estimator])]
    splits = [(f, t) for tree in trees for f, t in zip(tree.feature, tree.threshold, strict=True) if f >= 0]
    rows = []
    for feature, threshold in splits[:limit]:
        near32 = np.float32(threshold)
        for value in (
            threshold,
            np.nextafter(threshold, -np.inf),
            np.nextafter(threshold, np.inf),
            float(near32),
            float(np.nextafter(near32, np.float32(-np.inf))),
            float(np.nextafter(near32, np.float32(np.inf))),
        ):
            row = x[len(rows) % len(x)].copy()
            row[feature] = value
            rows.append(row)
    return np.vstack([x, *rows]) if rows else x


def check(estimator: Any, x: np.ndarray, y: np.ndarray, task: Task) -> None:
    """Fit; the vectorised head equals skl2onnx's node for node and output for output, and
    matches scikit-learn: labels equal, probabilities and values within the export tolerance."""
    estimator.fit(x[::2], y[::2])
    converted = tree_head(estimator, x.shape[1], TARGET_OPSET)
    assert converted is not None
    head, feature_type = converted
    onnx.checker.check_model(head)
    stock = stock_head(estimator, x.shape[1], task)
    assert nodes(head) == nodes(stock)
    assert list(head.graph.input) == list(stock.graph.input)
    assert list(head.graph.output) == list(stock.graph.output)
    rows = boundary_rows(estimator, x[1::2])
    ours, theirs = run(head, rows), run(stock, rows)
    for mine, reference in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(mine, reference)
    if task == "classification":
        assert feature_type == onnx.TensorProto.FLOAT
        np.testing.assert_array_equal(ours[0], estimator.predict(rows))
        np.testing.assert_allclose(ours[1], estimator.predict_proba(rows), atol=TOLERANCE)
    else:
        assert feature_type == onnx.TensorProto.DOUBLE
        assert ours[0].dtype == np.float64 and ours[0].shape == (len(rows), 1)
        np.testing.assert_allclose(ours[0].ravel(), estimator.predict(rows), atol=TOLERANCE)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thresholds_equal_skl2onnx_bit_for_bit(dtype: type) -> None:
    rng = np.random.default_rng(0)
    floats = rng.uniform(-1, 1, 300).astype(np.float32)
    neighbours = np.nextafter(floats, np.float32(np.inf))
    midpoints = (floats.astype(np.float64) + neighbours.astype(np.float64)) / 2
    values = np.concatenate(
        [
            rng.normal(0, 1, 300) * 10.0 ** rng.integers(-30, 30, 300),
            floats.astype(np.float64),
            midpoints,
            np.nextafter(midpoints, -np.inf),
            np.nextafter(midpoints, np.inf),
            [0.0, 1.0, -1.0, 0.5, 1e-40, -1e-40, 3e37],
        ]
    )
    expected = np.array([sklearn_threshold(value, dtype, "BRANCH_LEQ") for value in values], dtype=np.float64)
    np.testing.assert_array_equal(sklearn_thresholds(values, dtype).view(np.int64), expected.view(np.int64))


@pytest.mark.parametrize("data", CLASSIFICATION, ids=str)
@pytest.mark.parametrize("name", list(candidates("classification")), ids=str)
def test_classifiers_equal_skl2onnx_and_scikit_learn(name: str, data: str) -> None:
    x, y = CLASSIFICATION[data]()
    check(candidates("classification")[name], x, y, "classification")


@pytest.mark.parametrize("data", REGRESSION, ids=str)
@pytest.mark.parametrize("name", list(candidates("regression")), ids=str)
def test_regressors_equal_skl2onnx_and_scikit_learn(name: str, data: str) -> None:
    x, y = REGRESSION[data]()
    check(candidates("regression")[name], x, y, "regression")


@pytest.mark.parametrize(
    ("estimator", "task"),
    [
        (DecisionTreeRegressor(), "regression"),
        (RandomForestRegressor(n_estimators=5, random_state=0), "regression"),
        (DecisionTreeClassifier(min_samples_split=10_000), "classification"),
    ],
    ids=["tree-regressor", "forest-regressor", "tree-classifier"],
)
def test_single_leaf_trees(estimator: Any, task: Task) -> None:
    x, y = load_iris(return_X_y=True)
    target = np.full(len(y), 2.5) if task == "regression" else (y > 0).astype(int)
    check(estimator, x, target, task)
    assert all(tree.tree_.node_count == 1 for tree in getattr(estimator, "estimators_", [estimator]))


def test_cases_it_does_not_cover_go_to_skl2onnx() -> None:
    x, y = load_iris(return_X_y=True)
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    one_class = DecisionTreeClassifier().fit(x, np.zeros(len(y), dtype=int))
    two_outputs = DecisionTreeRegressor(max_depth=3).fit(x, np.column_stack([y, -y]))
    assert tree_head(one_class, 4, TARGET_OPSET) is None
    assert tree_head(two_outputs, 4, TARGET_OPSET) is None
    model = pipeline(frame, DecisionTreeClassifier()).fit(frame, np.zeros(len(y), dtype=int))
    model_bytes, info = export_onnx(model, frame, task="classification")
    assert info.converted and model_bytes is not None, info.reason
    assert tree_head(pipeline(frame, DecisionTreeRegressor()), 4, TARGET_OPSET) is None  # not a tree


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_export_chains_the_same_graph_as_before(task: Task) -> None:
    x, y = load_breast_cancer(return_X_y=True) if task == "classification" else load_diabetes(return_X_y=True)
    frame = pd.DataFrame(x[:, :8], columns=[f"f{i}" for i in range(8)])
    estimator = make_estimator("random_forest", task, {"n_estimators": 10, "max_depth": None}, seed=0)
    # float32 outputs hold 1e-5 for |y| below ~100 (see export's docstring): diabetes in hundreds
    model = pipeline(frame, estimator).fit(frame, y if task == "classification" else y / 100)
    pre, features, width = _convert_preprocess(model, frame)
    names = ["label", "probabilities"] if task == "classification" else ["prediction"]
    feature_type = onnx.TensorProto.FLOAT if task == "classification" else onnx.TensorProto.DOUBLE
    before = _chain(pre, stock_head(model.steps[-1][1], width, task), features, feature_type, names)
    after = _convert(model, frame, task)
    assert nodes(after) == nodes(before)
    assert list(after.graph.input) == list(before.graph.input)
    assert list(after.graph.output) == list(before.graph.output)
    assert after.opset_import == before.opset_import and after.ir_version == before.ir_version
    model_bytes, info = export_onnx(model, frame, task=task)
    assert info.converted and model_bytes is not None, info.reason
    outputs = run_onnx(model_bytes, frame)
    if task == "classification":
        np.testing.assert_array_equal(outputs["label"], model.predict(frame))
        np.testing.assert_allclose(outputs["probabilities"], model.predict_proba(frame), atol=TOLERANCE)
    else:
        np.testing.assert_allclose(outputs["prediction"].ravel(), model.predict(frame), atol=TOLERANCE)


def test_a_forest_export_imports_neither_xgboost_nor_lightgbm() -> None:
    script = textwrap.dedent(
        """
        import sys
        from sklearn.datasets import load_iris
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler
        from layerops.training.candidates import make_estimator
        from layerops.training.export import export_onnx

        x, y = load_iris(return_X_y=True, as_frame=True)
        forest = make_estimator("random_forest", "classification", {"n_estimators": 5}, seed=0)
        model = Pipeline([("scale", StandardScaler()), ("model", forest)]).fit(x, y)
        _, info = export_onnx(model, x, task="classification")
        assert info.converted, info.reason
        print(sorted(name for name in ("xgboost", "lightgbm", "onnxmltools") if name in sys.modules))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
