"""ONNX export: parity with the native pipeline, the feed/output contract, graceful refusals."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    RobustScaler,
    StandardScaler,
)
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from xgboost import XGBClassifier, XGBRegressor

from layerops.bundle.estimators import OneRuleClassifier, OneRuleRegressor
from layerops.bundle.metadata import FeatureSchema
from layerops.bundle.onnx_io import (
    LABEL_OUTPUT,
    PREDICTION_OUTPUT,
    PROBABILITIES_OUTPUT,
    numeric_input_dtype,
    onnx_feeds,
)
from layerops.errors import DataError
from layerops.training.export import export_onnx

TOLERANCE = 1e-5


def pipeline(frame: pd.DataFrame, estimator: Any, *, scaler: Any = None, encoder: Any = None) -> Pipeline:
    """The training layer's pipeline shape for the columns of `frame`."""
    numeric = [str(c) for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    categorical = [str(c) for c in frame.columns if c not in numeric]
    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        scale = StandardScaler() if scaler is None else scaler
        steps = [("impute", SimpleImputer(strategy="median")), ("scale", scale)]
        parts.append(("num", Pipeline(steps), numeric))
    if categorical:
        encode = OneHotEncoder(handle_unknown="ignore", sparse_output=False) if encoder is None else encoder
        steps = [("impute", SimpleImputer(strategy="most_frequent")), ("encode", encode)]
        parts.append(("cat", Pipeline(steps), categorical))
    return Pipeline([("preprocess", ColumnTransformer(parts)), ("model", estimator)])


def schema(frame: pd.DataFrame) -> list[FeatureSchema]:
    """Numbers → float, the rest → category."""
    return [
        FeatureSchema(name=str(c), dtype="float" if pd.api.types.is_numeric_dtype(frame[c]) else "category")
        for c in frame.columns
    ]


def run_onnx(model_bytes: bytes, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """What the delivery layer does: feeds typed by the session (or by its numeric dtype), run."""
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    dtype = numeric_input_dtype(node.type for node in session.get_inputs())
    by_dtype = session.run(None, onnx_feeds(frame, schema(frame), dtype))
    by_session = session.run(None, onnx_feeds(frame, schema(frame), session))
    for first, second in zip(by_dtype, by_session, strict=True):
        np.testing.assert_array_equal(first, second)
    return dict(zip(names, by_session, strict=True))


@pytest.fixture
def iris_split(iris_frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """Iris train features, label-encoded target and test features."""
    order = np.random.default_rng(0).permutation(len(iris_frame))
    features = iris_frame.drop(columns="species")
    target = pd.factorize(iris_frame["species"], sort=True)[0]
    return features.iloc[order[:100]], target[order[:100]], features.iloc[order[100:]]


@pytest.fixture
def mixed_split(mixed_frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """mixed_frame with missing categories in train and unseen/missing ones in test."""
    features = mixed_frame.drop(columns="cost")
    features.loc[[5, 17, 250, 333, 390], "origin"] = np.nan
    test = features.iloc[300:].copy()
    test.loc[test.index[:3], "origin"] = "west"  # never seen in training
    test.loc[test.index[3:6], "service"] = None
    test.loc[test.index[6:9], "weight"] = np.nan
    return features.iloc[:300], mixed_frame["cost"].iloc[:300], test


CLASSIFIERS = [
    LogisticRegression(max_iter=1000),
    DecisionTreeClassifier(random_state=0),
    RandomForestClassifier(n_estimators=30, random_state=0),
    XGBClassifier(n_estimators=30, max_depth=3),
    LGBMClassifier(n_estimators=30, verbose=-1),
    OneRuleClassifier(),
]


@pytest.mark.parametrize("estimator", CLASSIFIERS, ids=lambda e: type(e).__name__)
def test_iris_classifiers_match_native_probabilities(estimator: Any, iris_split: Any) -> None:
    train, target, test = iris_split
    model = pipeline(train, estimator).fit(train, target)
    model_bytes, info = export_onnx(model, test, task="classification")
    assert info.converted, info.reason
    assert model_bytes is not None
    assert info.max_abs_error is not None and info.max_abs_error <= TOLERANCE
    assert info.rows_checked == len(test)
    outputs = run_onnx(model_bytes, test)
    assert set(outputs) == {LABEL_OUTPUT, PROBABILITIES_OUTPUT}
    np.testing.assert_allclose(outputs[PROBABILITIES_OUTPUT], model.predict_proba(test), atol=TOLERANCE)
    np.testing.assert_array_equal(outputs[LABEL_OUTPUT], model.predict(test))


REGRESSORS = [
    Ridge(),
    LinearRegression(),
    DecisionTreeRegressor(random_state=0),
    RandomForestRegressor(n_estimators=30, random_state=0),
    XGBRegressor(n_estimators=60, max_depth=4),
    LGBMRegressor(n_estimators=60, verbose=-1),
    OneRuleRegressor(),
]


@pytest.mark.parametrize("estimator", REGRESSORS, ids=lambda e: type(e).__name__)
def test_mixed_regressors_match_native_predictions(estimator: Any, mixed_split: Any) -> None:
    train, target, test = mixed_split
    model = pipeline(train, estimator).fit(train, target)
    model_bytes, info = export_onnx(model, test, task="regression")
    assert info.converted, info.reason
    assert model_bytes is not None
    assert info.max_abs_error is not None and info.max_abs_error <= TOLERANCE
    outputs = run_onnx(model_bytes, test)
    assert set(outputs) == {PREDICTION_OUTPUT}
    np.testing.assert_allclose(outputs[PREDICTION_OUTPUT].ravel(), model.predict(test), atol=TOLERANCE)


@pytest.mark.parametrize(
    ("scaler", "encoder"),
    [
        (MinMaxScaler(), OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)),
        (RobustScaler(), None),
        ("passthrough", None),
    ],
    ids=["minmax-ordinal", "robust", "passthrough"],
)
def test_preprocessing_variants_keep_parity(scaler: Any, encoder: Any, mixed_split: Any) -> None:
    train, target, test = mixed_split
    model = pipeline(train, Ridge(), scaler=scaler, encoder=encoder).fit(train, target)
    _, info = export_onnx(model, test, task="regression")
    assert info.converted, info.reason
    assert info.max_abs_error is not None and info.max_abs_error <= 1e-9


@pytest.mark.parametrize("columns", [["length", "weight"], ["origin", "service"]])
def test_one_column_group_alone_converts(columns: list[str], mixed_split: Any) -> None:
    train, target, test = mixed_split
    model = pipeline(train[columns], Ridge()).fit(train[columns], target)
    _, info = export_onnx(model, test[columns], task="regression")
    assert info.converted, info.reason


def test_classifier_with_categorical_inputs(mixed_split: Any) -> None:
    train, target, test = mixed_split
    labels = (target > target.median()).astype(int).to_numpy()
    for estimator in (LogisticRegression(max_iter=1000), LGBMClassifier(n_estimators=20, verbose=-1)):
        model = pipeline(train, estimator).fit(train, labels)
        _, info = export_onnx(model, test, task="classification")
        assert info.converted, info.reason


def test_inputs_keep_raw_column_names(iris_split: Any) -> None:
    train, target, test = iris_split
    names = {c: c.replace("_", " ") + " (cm)" for c in train.columns}
    train, test = train.rename(columns=names), test.rename(columns=names)
    model = pipeline(train, LogisticRegression(max_iter=1000)).fit(train, target)
    model_bytes, info = export_onnx(model, test, task="classification")
    assert info.converted and model_bytes is not None, info.reason
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    assert [(i.name, i.type, i.shape[1]) for i in session.get_inputs()] == [
        (name, "tensor(double)", 1) for name in names.values()
    ]


def test_parity_failure_is_reported_not_raised(mixed_split: Any) -> None:
    train, target, test = mixed_split
    model = pipeline(train, RandomForestRegressor(n_estimators=10, random_state=0)).fit(train, target)
    model_bytes, info = export_onnx(model, test, task="regression", tolerance=0.0)
    assert model_bytes is None
    assert not info.converted
    assert info.reason is not None and info.reason.startswith("parity failed: max error ")
    assert info.max_abs_error is not None and info.max_abs_error > 0
    assert info.rows_checked == len(test)


class _Halver(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """A custom estimator skl2onnx has never heard of."""

    def fit(self, X: Any, y: Any) -> _Halver:
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(np.asarray(X).sum(axis=1) / 2, dtype=np.float64)


@pytest.mark.parametrize(
    "build",
    [
        lambda frame: pipeline(frame, _Halver()),
        lambda frame: Pipeline(
            [("shift", FunctionTransformer(lambda x: x + 1)), ("model", pipeline(frame, Ridge()))]
        ),
    ],
    ids=["custom-estimator", "lambda-transformer"],
)
def test_unsupported_models_are_refused_with_a_reason(build: Any, mixed_split: Any) -> None:
    train, target, test = mixed_split
    numeric = ["length", "weight"]
    model = build(train[numeric]).fit(train[numeric], target)
    model_bytes, info = export_onnx(model, test[numeric], task="regression")
    assert model_bytes is None
    assert not info.converted
    assert info.reason and "\n" not in info.reason


def test_non_pipeline_and_empty_sample_are_refused(mixed_split: Any) -> None:
    train, target, test = mixed_split
    _, info = export_onnx(Ridge().fit(train[["weight"]], target), test, task="regression")
    assert not info.converted and info.reason and "Pipeline" in info.reason
    model = pipeline(train, Ridge()).fit(train, target)
    _, info = export_onnx(model, test.iloc[:0], task="regression")
    assert not info.converted and info.rows_checked == 0


def test_feeds_mark_missing_categories_with_the_empty_string() -> None:
    frame = pd.DataFrame(
        {
            "x": [1, 2, 3],
            "c": pd.Series(["a", None, np.nan], dtype=object),
            "s": pd.Series(["u", None, "v"], dtype="str"),
        }
    )
    features = [
        FeatureSchema(name="c", dtype="category"),
        FeatureSchema(name="x", dtype="int"),
        FeatureSchema(name="s", dtype="category"),
    ]
    feeds = onnx_feeds(frame, features, "float32")
    assert list(feeds) == ["c", "x", "s"]
    assert feeds["c"].ravel().tolist() == ["a", "", ""]
    assert feeds["s"].ravel().tolist() == ["u", "", "v"]
    assert feeds["x"].dtype == np.float32 and feeds["x"].shape == (3, 1)
    with pytest.raises(DataError, match="missing"):
        onnx_feeds(frame, [FeatureSchema(name="gone", dtype="float")])
    assert numeric_input_dtype(["tensor(string)"]) == "float64"
    assert numeric_input_dtype(["tensor(float)", "tensor(string)"]) == "float32"


def test_session_typed_feeds_follow_the_graph_not_the_schema(mixed_split: Any) -> None:
    train, target, test = mixed_split
    model = pipeline(train, Ridge()).fit(train, target)
    model_bytes, _ = export_onnx(model, test, task="regression")
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    loose = [FeatureSchema(name=name, dtype="float") for name in test.columns]  # wrong for text
    feeds = onnx_feeds(test.assign(extra=1.0), [*loose, FeatureSchema(name="extra", dtype="float")], session)
    assert set(feeds) == set(test.columns)
    assert feeds["origin"].dtype == object and feeds["length"].dtype == np.float64
    (prediction,) = session.run(None, feeds)
    np.testing.assert_allclose(prediction.ravel(), model.predict(test), atol=TOLERANCE)


def test_baseline_without_a_split_exports_its_prior() -> None:
    train = pd.DataFrame({"flat": np.ones(20), "kind": ["a", "b"] * 10})
    target = np.array([0, 1, 1, 1] * 5)
    model = pipeline(train[["flat"]], OneRuleClassifier()).fit(train[["flat"]], target)
    assert model.named_steps["model"].feature_ == -1
    model_bytes, info = export_onnx(
        model, train[["flat"]].assign(flat=[np.nan, 3.0] * 10), task="classification"
    )
    assert info.converted and info.max_abs_error == 0.0, info.reason
    assert model_bytes is not None
