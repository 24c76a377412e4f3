"""Split and preprocessing: stratified, reproducible, fitted on the train split only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from layerops.errors import TrainingError
from layerops.spec import SplitSpec, TransformSpec
from layerops.training.transform import (
    build_preprocessor,
    encode_target,
    infer_task,
    prepare_features,
    split_frame,
)


def test_infer_task() -> None:
    assert infer_task(pd.Series(["a", "b"])) == "classification"
    assert infer_task(pd.Series([True, False])) == "classification"
    assert infer_task(pd.Series([0, 1, 2, 1])) == "classification"
    assert infer_task(pd.Series(np.linspace(0, 1, 50))) == "regression"
    assert infer_task(pd.Series(range(100))) == "regression"


def test_encode_target_classes_are_sorted_labels() -> None:
    y, classes = encode_target(pd.Series(["b", "a", "b", "c"], name="t"), "classification")
    assert classes == ["a", "b", "c"]
    assert y.tolist() == [1, 0, 1, 2]
    y2, classes2 = encode_target(pd.Series([1.0, 0.0, 1.0], name="t"), "classification")
    assert classes2 == ["0", "1"] and y2.tolist() == [1, 0, 1]


def test_single_class_target_is_refused() -> None:
    with pytest.raises(TrainingError, match="target 't' has a single class 'a'"):
        encode_target(pd.Series(["a", "a"], name="t"), "classification")


def test_regression_target_must_be_numeric() -> None:
    with pytest.raises(TrainingError, match="not numeric"):
        encode_target(pd.Series(["a", "b"], name="t"), "regression")


def test_split_is_stratified_and_reproducible(iris_frame: pd.DataFrame) -> None:
    y, _ = encode_target(iris_frame["species"], "classification")
    x = prepare_features(iris_frame.drop(columns=["species"]))
    spec = SplitSpec(validation=0.2, test=0.2)
    a = split_frame(x, y, spec, task="classification", seed=1)
    b = split_frame(x, y, spec, task="classification", seed=1)
    assert len(a.x_train) + len(a.x_val) + len(a.x_test) == 150
    assert (len(a.x_val), len(a.x_test)) == (30, 30)
    for part in (a.y_train, a.y_val, a.y_test):
        counts = np.bincount(part)
        assert counts.max() - counts.min() <= 1  # each class equally represented
    pd.testing.assert_frame_equal(a.x_test, b.x_test)


def test_preprocessing_is_fitted_on_train_only(mixed_frame: pd.DataFrame) -> None:
    """The fitted scaler's mean equals the train split's mean, not the full data's."""
    y, _ = encode_target(mixed_frame["cost"], "regression")
    x = prepare_features(mixed_frame.drop(columns=["cost"]))
    splits = split_frame(x, y, SplitSpec(), task="regression", seed=3)
    pre = build_preprocessor(splits.x_train, TransformSpec(scale="standard")).fit(splits.x_train)
    numeric = pre.named_transformers_["num"]
    scaler_mean = numeric.named_steps["scale"].mean_
    imputed_train = numeric.named_steps["impute"].transform(splits.x_train[["length", "weight"]])
    np.testing.assert_allclose(scaler_mean, imputed_train.mean(axis=0))
    full_mean = x[["length", "weight"]].mean().to_numpy()
    assert not np.allclose(scaler_mean, full_mean)
    train_median = splits.x_train["length"].median()
    assert numeric.named_steps["impute"].statistics_[0] == pytest.approx(train_median)
    encoder = pre.named_transformers_["cat"].named_steps["encode"]
    assert [list(c) for c in encoder.categories_] == [["east", "north", "south"], ["express", "standard"]]


def test_prepare_features_keeps_missing_as_nan() -> None:
    frame = prepare_features(pd.DataFrame({"n": [1, None], "c": ["x", None], "b": [True, False]}))
    assert frame["n"].dtype == np.float64 and frame["b"].tolist() == [1.0, 0.0]
    assert frame["c"].iloc[0] == "x" and pd.isna(frame["c"].iloc[1])


def test_too_few_rows_to_split() -> None:
    x = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
    with pytest.raises(TrainingError, match="too few to split"):
        split_frame(x, np.array([0.0, 1.0, 2.0]), SplitSpec(), task="regression", seed=0)
