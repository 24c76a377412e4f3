"""The one-rule baselines: a real rule on real data, the estimator contract, safe round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from layerops.bundle.estimators import OneRuleClassifier, OneRuleRegressor


def test_classifier_learns_a_petal_rule_on_iris(iris_frame: pd.DataFrame) -> None:
    features = iris_frame.drop(columns="species")
    target = pd.factorize(iris_frame["species"], sort=True)[0]
    model = Pipeline(
        [
            ("preprocess", ColumnTransformer([("num", StandardScaler(), list(features.columns))])),
            ("model", OneRuleClassifier()),
        ]
    ).fit(features, target)
    rule = model.named_steps["model"]
    chosen = model.named_steps["preprocess"].get_feature_names_out()[rule.feature_]
    assert "petal" in chosen
    assert model.score(features, target) >= 0.6
    proba = model.predict_proba(features)
    assert proba.shape == (150, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert list(rule.classes_) == [0, 1, 2]
    # the left leaf is pure setosa
    np.testing.assert_allclose(rule.left_value_, [1.0, 0.0, 0.0])


def test_classifier_threshold_splits_between_training_values() -> None:
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = OneRuleClassifier().fit(X, ["a", "a", "b", "b"])
    assert model.feature_ == 0
    assert 1.0 < model.threshold_ < 2.0
    assert list(model.predict(np.array([[0.5], [2.5], [np.nan]]))) == ["a", "b", "b"]


def test_regressor_learns_a_step_with_leaf_means() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = np.where(X[:, 1] > 0.3, 5.0, 1.0) + rng.normal(scale=0.01, size=200)
    model = OneRuleRegressor().fit(X, y)
    assert model.feature_ == 1
    left = X[:, 1] <= model.threshold_
    assert model.left_value_ == pytest.approx(y[left].mean())
    assert model.right_value_ == pytest.approx(y[~left].mean())
    assert model.score(X, y) > 0.99


@pytest.mark.parametrize("estimator", [OneRuleClassifier(), OneRuleRegressor()])
def test_single_row_falls_back_to_the_prior(estimator: OneRuleClassifier | OneRuleRegressor) -> None:
    model = clone(estimator).fit(np.array([[1.0, 2.0]]), np.array([1]))
    assert model.feature_ == -1
    out = model.predict(np.array([[5.0, -5.0], [0.0, 0.0]]))
    np.testing.assert_array_equal(out, [1, 1])


def test_constant_features_give_the_majority_class_with_train_frequencies() -> None:
    X = np.ones((10, 2))
    y = np.array([0] * 7 + [1] * 3)
    model = OneRuleClassifier().fit(X, y)
    assert model.feature_ == -1
    np.testing.assert_allclose(model.predict_proba(np.zeros((2, 2))), [[0.7, 0.3], [0.7, 0.3]])
    assert list(model.predict(X[:1])) == [0]


def test_constant_features_give_the_mean() -> None:
    model = OneRuleRegressor().fit(np.zeros((4, 1)), np.array([1.0, 2.0, 3.0, 6.0]))
    assert model.feature_ == -1
    np.testing.assert_allclose(model.predict(np.ones((3, 1))), 3.0)


def test_single_class_target_predicts_it_with_certainty() -> None:
    model = OneRuleClassifier().fit(np.arange(6.0).reshape(3, 2), [2, 2, 2])
    np.testing.assert_allclose(model.predict_proba(np.zeros((1, 2))), [[1.0]])


def test_fitting_is_deterministic_and_order_free() -> None:
    rng = np.random.default_rng(3)
    X = rng.integers(0, 4, size=(60, 4)).astype(float)  # many tied candidate splits
    y = (X[:, 0] + X[:, 2] > 3).astype(int)
    first = OneRuleClassifier().fit(X, y)
    order = rng.permutation(60)
    second = OneRuleClassifier().fit(X[order], y[order])
    assert (first.feature_, first.threshold_) == (second.feature_, second.threshold_)
    np.testing.assert_array_equal(first.left_value_, second.left_value_)


def test_min_samples_leaf_is_respected() -> None:
    X = np.arange(10.0).reshape(-1, 1)
    y = np.array([1] + [0] * 9)
    model = OneRuleClassifier(min_samples_leaf=3).fit(X, y)
    assert model.feature_ == -1 or (X[:, 0] <= model.threshold_).sum() >= 3


def test_estimator_contract() -> None:
    model = OneRuleRegressor(min_samples_leaf=4)
    assert model.get_params() == {"min_samples_leaf": 4}
    assert clone(model).get_params() == {"min_samples_leaf": 4}
    assert not hasattr(model, "feature_")
    assert model.fit(np.zeros((3, 1)), [1.0, 2.0, 3.0]) is model


@pytest.mark.parametrize("estimator", [OneRuleClassifier(), OneRuleRegressor()])
def test_skops_round_trip_with_exactly_our_types_trusted(
    estimator: OneRuleClassifier | OneRuleRegressor, tmp_path: Path
) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 3))
    y = (X[:, 2] > 0).astype(int)
    model = clone(estimator).fit(X, y)
    path = tmp_path / "model.skops"
    sio.dump(model, path)
    untrusted = sio.get_untrusted_types(file=path)
    assert untrusted == [f"layerops.bundle.estimators.{type(estimator).__name__}"]
    loaded = sio.load(path, trusted=untrusted)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert (loaded.feature_, loaded.threshold_) == (model.feature_, model.threshold_)
