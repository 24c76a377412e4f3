"""The vectorised paired bootstrap equals scikit-learn's metrics on the resampled rows, round by
round, and is fast enough for 1,000 rounds on 20,000 rows."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

from layerops import spec
from layerops.releases import bootstrap
from layerops.releases.bootstrap import Outputs, metric_values, paired, resample_weights
from layerops.spec import LOWER_IS_BETTER

ROUNDS = 200


def _classifier_outputs(rows: int, labels: int, seed: int) -> tuple[Outputs, Outputs]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, labels, rows)
    pair = []
    for skill in (2.0, 1.5):
        logits = rng.normal(size=(rows, labels))
        logits[np.arange(rows), truth] += skill
        proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        proba = np.round(proba, 2)  # ties, as trees give
        proba /= proba.sum(axis=1, keepdims=True)
        pair.append(Outputs(truth=truth, predictions=proba.argmax(axis=1), probabilities=proba))
    return pair[0], pair[1]


def _regressor_outputs(rows: int, seed: int) -> tuple[Outputs, Outputs]:
    rng = np.random.default_rng(seed)
    truth = 1000.0 + rng.normal(size=rows) * 3.0  # a large mean: the r2 sums must not cancel
    return (
        Outputs(truth=truth, predictions=truth + rng.normal(size=rows)),
        Outputs(truth=truth, predictions=truth + rng.normal(size=rows) * 1.2),
    )


def _sklearn(metric: str, outputs: Outputs, idx: np.ndarray) -> float:
    truth, predicted = outputs.truth[idx], outputs.predictions[idx]
    proba = outputs.probabilities[idx] if outputs.probabilities is not None else None
    if metric == "accuracy":
        return float(accuracy_score(truth, predicted))
    if metric == "f1_macro":
        assert proba is not None
        labels = list(range(proba.shape[1]))
        return float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0))
    if metric == "log_loss":
        assert proba is not None
        return float(log_loss(truth, proba, labels=list(range(proba.shape[1]))))
    if metric == "roc_auc":
        assert proba is not None
        if proba.shape[1] == 2:
            return float(roc_auc_score(truth, proba[:, 1]))
        return float(roc_auc_score(truth, proba, multi_class="ovr", average="macro"))
    if metric == "rmse":
        return float(np.sqrt(mean_squared_error(truth, predicted)))
    if metric == "mae":
        return float(mean_absolute_error(truth, predicted))
    return float(r2_score(truth, predicted))


def _reference(metric: str, challenger: Outputs, incumbent: Outputs, seed: int) -> tuple[float, float]:
    """The slow bootstrap: round r's rows are the r-th `integers(0, n, n)` of the seed's generator."""
    rng = np.random.default_rng(seed)
    rows = len(challenger.truth)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    differences = []
    for _ in range(ROUNDS):
        idx = rng.integers(0, rows, rows)
        differences.append(sign * (_sklearn(metric, challenger, idx) - _sklearn(metric, incumbent, idx)))
    low, high = np.percentile(differences, [2.5, 97.5])
    return float(low), float(high)


CASES = [
    ("accuracy", 3),
    ("f1_macro", 3),
    ("f1_macro", 7),  # some classes absent from some resamples: they count as 0, as sklearn does
    ("log_loss", 3),
    ("roc_auc", 2),
    ("roc_auc", 3),
]


@pytest.mark.parametrize(("metric", "labels"), CASES)
def test_classification_intervals_match_sklearn_on_the_same_resamples(metric: str, labels: int) -> None:
    challenger, incumbent = _classifier_outputs(120 if labels == 7 else 400, labels, seed=labels)
    interval = paired(
        metric,
        challenger,
        incumbent,
        higher_is_better=metric not in LOWER_IS_BETTER,
        resamples=ROUNDS,
        confidence=0.95,
        seed=11,
    )
    low, high = _reference(metric, challenger, incumbent, seed=11)
    assert interval.rounds == ROUNDS
    assert interval.low == pytest.approx(low, abs=1e-12, rel=0)
    assert interval.high == pytest.approx(high, abs=1e-12, rel=0)
    every = np.arange(len(challenger.truth))
    expected = _sklearn(metric, challenger, every) - _sklearn(metric, incumbent, every)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    assert interval.difference == pytest.approx(sign * expected, abs=1e-12, rel=0)


@pytest.mark.parametrize("metric", ["rmse", "mae", "r2"])
def test_regression_intervals_match_sklearn_on_the_same_resamples(metric: str) -> None:
    challenger, incumbent = _regressor_outputs(300, seed=5)
    interval = paired(
        metric,
        challenger,
        incumbent,
        higher_is_better=metric not in LOWER_IS_BETTER,
        resamples=ROUNDS,
        confidence=0.95,
        seed=3,
    )
    low, high = _reference(metric, challenger, incumbent, seed=3)
    assert interval.low == pytest.approx(low, abs=1e-12, rel=0)
    assert interval.high == pytest.approx(high, abs=1e-12, rel=0)
    assert interval.low is not None and interval.low > 0  # the first model is the better one


def test_the_weights_count_the_reference_rounds_draws() -> None:
    rng = np.random.default_rng(4)
    chunks = list(resample_weights(rows=7, rounds=10, seed=4))
    assert sum(c.shape[1] for c in chunks) == 10
    for row in np.concatenate([c.T for c in chunks]):
        assert row.tolist() == np.bincount(rng.integers(0, 7, 7), minlength=7).tolist()


def test_rounds_where_a_metric_is_undefined_are_left_out_and_too_few_leave_no_interval() -> None:
    proba = np.column_stack([np.linspace(0, 1, 100), np.linspace(1, 0, 100)])

    def outputs(truth: np.ndarray) -> Outputs:
        return Outputs(truth=truth, predictions=proba.argmax(axis=1), probabilities=proba)

    one_positive = outputs(np.array([0] * 99 + [1]))  # about 37 % of resamples have no positive
    assert np.isnan(metric_values("roc_auc", one_positive, np.eye(100)[:, :1] * 100)).all()
    some = paired(
        "roc_auc", one_positive, one_positive, higher_is_better=True, resamples=200, confidence=0.95, seed=0
    )
    assert 100 <= some.rounds < 200 and some.low == some.high == 0.0
    none = outputs(np.zeros(100, dtype=np.intp))
    undefined = paired("roc_auc", none, none, higher_is_better=True, resamples=200, confidence=0.95, seed=0)
    assert undefined.low is None and undefined.high is None and undefined.rounds == 0


def test_a_thousand_rounds_on_twenty_thousand_rows_are_fast(capsys: pytest.CaptureFixture[str]) -> None:
    challenger, incumbent = _classifier_outputs(20_000, 3, seed=1)
    new, old = _regressor_outputs(20_000, seed=1)
    timings = {}
    for metric in ("accuracy", "f1_macro", "log_loss", "roc_auc", "rmse", "mae", "r2"):
        pair = (new, old) if metric in {"rmse", "mae", "r2"} else (challenger, incumbent)
        start, cpu = time.perf_counter(), time.process_time()
        interval = paired(metric, *pair, higher_is_better=True, resamples=1000, confidence=0.95, seed=0)
        timings[metric] = (time.perf_counter() - start, time.process_time() - cpu)
        assert interval.rounds == (bootstrap.ROC_AUC_ROUNDS if metric == "roc_auc" else 1000)
    with capsys.disabled():  # timings are shown, not asserted: CI machines are shared
        print(
            f"\npaired bootstrap, 1,000 rounds (roc_auc {bootstrap.ROC_AUC_ROUNDS}) × 20,000 rows, "
            "seconds wall/CPU: "
            + ", ".join(f"{metric} {wall:.2f}/{cpu:.2f}" for metric, (wall, cpu) in timings.items())
        )


def test_the_metrics_are_the_specs() -> None:
    assert bootstrap.CLASSIFICATION_METRICS == spec.CLASSIFICATION_METRICS
    assert bootstrap.REGRESSION_METRICS == spec.REGRESSION_METRICS
    assert bootstrap.LOWER_IS_BETTER == spec.LOWER_IS_BETTER
