"""Tuning and evaluation: seeded search, metrics that match scikit-learn, honest latency."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from layerops.spec import CandidateSpec
from layerops.training.candidates import is_fixed, make_estimator, search_space
from layerops.training.evaluation import ResourceMonitor, better, score, sort_key
from layerops.training.tuning import Search, tune


def _iris_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_iris(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    return x[:100], y[:100], x[100:], y[100:]


def test_search_space_merges_spec_params_over_defaults() -> None:
    space = search_space(CandidateSpec(name="random_forest", params={"n_estimators": 30}), "classification")
    assert space["n_estimators"] == 30
    assert space["max_depth"] == {"low": 3, "high": 16}
    assert not is_fixed(space)
    assert is_fixed(search_space(CandidateSpec(name="baseline"), "regression"))
    linear = search_space(CandidateSpec(name="linear", params={"C": 1.0, "alpha": 2.0}), "regression")
    assert "C" not in linear and linear["alpha"] == 2.0


def test_tuning_is_seeded_and_records_every_trial() -> None:
    space = search_space(CandidateSpec(name="decision_tree"), "classification")
    seen: list[int] = []
    first = tune(
        "decision_tree",
        "classification",
        space,
        _iris_arrays(),
        Search(metric="f1_macro", trials=6, folds=0, seed=5),
        lambda number, value: seen.append(number),
    )
    second = tune(
        "decision_tree",
        "classification",
        space,
        _iris_arrays(),
        Search(metric="f1_macro", trials=6, folds=0, seed=5),
    )
    assert seen == [1, 2, 3, 4, 5, 6]
    assert first.trials == second.trials
    assert first.best_score == max(value for _, value in first.trials)
    assert 2 <= first.best_params["max_depth"] <= 12


def test_tuning_minimises_lower_is_better_metrics() -> None:
    x, y = load_diabetes(return_X_y=True)
    data = (x[:300], y[:300], x[300:], y[300:])
    result = tune(
        "linear",
        "regression",
        search_space(CandidateSpec(name="linear"), "regression"),
        data,
        Search(metric="rmse", trials=5, folds=3, seed=0),
    )
    assert result.best_score == min(value for _, value in result.trials)
    assert result.model is None and result.val_outputs is None  # folds only: the caller refits


def test_tuning_hands_over_the_best_models_validation_outputs() -> None:
    data = _iris_arrays()
    space = search_space(CandidateSpec(name="decision_tree"), "classification")
    result = tune(
        "decision_tree",
        "classification",
        space,
        data,
        Search(metric="accuracy", trials=4, folds=0, seed=1),
    )
    assert result.model is not None and result.val_outputs is not None
    pred, proba = result.val_outputs
    assert proba is not None
    np.testing.assert_array_equal(proba, result.model.predict_proba(data[2]))
    np.testing.assert_array_equal(pred, result.model.predict(data[2]))
    assert score("classification", data[3], pred, proba)["accuracy"] == result.best_score


def test_scores_match_scikit_learn() -> None:
    x_train, y_train, x_val, y_val = _iris_arrays()
    model = LogisticRegression(max_iter=500).fit(x_train, y_train)
    proba = model.predict_proba(x_val)
    pred = proba.argmax(axis=1)
    metrics = score("classification", y_val, pred, proba)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_val, pred))
    assert metrics["f1_macro"] == pytest.approx(f1_score(y_val, pred, average="macro"))
    assert 0.5 < metrics["roc_auc"] <= 1.0 and metrics["log_loss"] > 0


def test_metric_direction() -> None:
    assert better("rmse", 1.0, 2.0) and not better("accuracy", 0.5, 0.9)
    assert sorted([0.2, float("nan"), 0.9], key=lambda v: sort_key("accuracy", v))[0] == 0.9


def test_resource_monitor_sees_allocations() -> None:
    with ResourceMonitor() as monitor:
        block = np.ones((64, 2**20 // 8 * 2))  # about 128 MB
        block.sum()
    assert monitor.metrics()["peak_rss_mb"] > 100
    assert monitor.metrics()["wall_seconds"] > 0


@pytest.mark.parametrize(
    "name", ["linear", "decision_tree", "random_forest", "xgboost", "lightgbm", "baseline"]
)
def test_every_candidate_fits_both_tasks(name: str) -> None:
    x_train, y_train, x_val, _ = _iris_arrays()
    clf = make_estimator(name, "classification", {}, seed=0).fit(x_train, y_train)
    assert clf.predict_proba(x_val).shape == (50, 3)
    reg = make_estimator(name, "regression", {}, seed=0).fit(x_train, x_train[:, 0])
    assert reg.predict(x_val).shape == (50,)
