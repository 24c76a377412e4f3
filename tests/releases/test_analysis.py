"""The canary comparison on synthetic outcomes, and the outcome window."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from sklearn.metrics import f1_score

from layerops.releases.analysis import (
    Outcome,
    OutcomeWindow,
    compare,
    error_rate_p_value,
    metric_on_labels,
    prediction_distance,
)
from layerops.releases.policy import Analysis

ANALYSIS = Analysis()
CLASSES = ["setosa", "versicolor", "virginica"]


def outcomes(
    n: int,
    *,
    seed: int,
    error_rate: float = 0.0,
    latency_ms: float = 5.0,
    classes: tuple[float, ...] = (1 / 3, 1 / 3, 1 / 3),
    prefix: str = "r",
    values: tuple[float, float] | None = None,
) -> list[Outcome]:
    """`n` outcomes one millisecond apart: errors at `error_rate`, latency around `latency_ms`
    (exponential jitter of 1 ms), class predictions drawn with `classes` (or normal `values`)."""
    rng = np.random.default_rng(seed)
    failed = rng.random(n) < error_rate
    latency = (latency_ms + rng.exponential(1.0, n)) / 1000
    predicted: list[str | float] = (
        [float(v) for v in rng.normal(values[0], values[1], n)]
        if values is not None
        else [CLASSES[i] for i in rng.choice(3, n, p=classes)]
    )
    return [
        Outcome(
            i / 1000, not failed[i], float(latency[i]), None if failed[i] else predicted[i], f"{prefix}{i}"
        )
        for i in range(n)
    ]


def test_a_canary_like_its_baseline_passes() -> None:
    result = compare(
        outcomes(2000, seed=1, error_rate=0.01), outcomes(200, seed=2, error_rate=0.01), ANALYSIS
    )
    assert result.verdict == "pass", result.reasons
    assert result.reasons[0].startswith("the canary matches the baseline: error rate")
    assert result.numbers["baseline_requests"] == 2000 and result.numbers["canary_requests"] == 200
    assert result.checks == {"error_rate": True, "p99": True, "distance": True}
    json.dumps(result.as_dict(), allow_nan=False)


def test_a_canary_failing_30_percent_of_requests_fails() -> None:
    result = compare(outcomes(2000, seed=1), outcomes(200, seed=2, error_rate=0.3), ANALYSIS)
    assert result.verdict == "fail"
    assert result.checks["error_rate"] is False
    (reason,) = [r for r in result.reasons if "error rate" in r]
    rate = result.numbers["canary_error_rate"]
    assert isinstance(rate, float) and 0.2 < rate < 0.4
    assert f"{100 * rate:.2f} %" in reason and "0.00 %" in reason and "p = " in reason


def test_an_error_rate_increase_within_noise_does_not_fail() -> None:
    """3 failures in 100 against 1 % of 2000 is 2 points more, above the 1-point threshold, but
    a pooled z-test gives p ≈ 0.03: not beyond noise at 0.01."""
    baseline = [Outcome(i, i % 100 != 0, 0.005, "a", None) for i in range(2000)]
    canary = [Outcome(i, i >= 3, 0.005, "a", None) for i in range(100)]
    result = compare(baseline, canary, ANALYSIS)
    assert result.numbers["canary_error_rate"] == pytest.approx(0.03)
    assert 0.01 < (result.numbers["error_rate_p_value"] or 0) < 0.05
    assert result.verdict == "pass", result.reasons
    worse = [Outcome(i, i >= 8, 0.005, "a", None) for i in range(100)]  # 8 %: p far below 0.01
    assert compare(baseline, worse, ANALYSIS).verdict == "fail"


def test_the_error_rate_p_value_is_a_one_sided_two_proportion_test() -> None:
    assert error_rate_p_value(0, 1000, 0, 100) == 1.0
    assert error_rate_p_value(1000, 1000, 100, 100) == 1.0
    assert error_rate_p_value(10, 1000, 1, 100) == pytest.approx(0.5)
    assert error_rate_p_value(100, 1000, 0, 100) > 0.99  # the canary is better: no evidence it is worse
    assert error_rate_p_value(10, 1000, 30, 100) < 1e-10


def test_a_canary_50_ms_slower_fails_on_p99() -> None:
    result = compare(outcomes(2000, seed=1), outcomes(200, seed=2, latency_ms=55), ANALYSIS)
    assert result.verdict == "fail"
    assert result.checks == {"error_rate": True, "p99": False, "distance": True}
    (reason,) = result.reasons
    assert reason.startswith("the canary's p99 latency is ") and "ms slower (more than 10 ms)" in reason
    assert (result.numbers["canary_p99_ms"] or 0) - (result.numbers["baseline_p99_ms"] or 0) > 40


def test_a_slower_p99_must_exceed_both_the_ratio_and_the_absolute_increase() -> None:
    small_but_many_times = compare(
        outcomes(2000, seed=1, latency_ms=1), outcomes(200, seed=2, latency_ms=6), ANALYSIS
    )
    assert small_but_many_times.verdict == "pass"  # ~3x slower but under 10 ms more
    large_but_proportionate = compare(
        outcomes(2000, seed=1, latency_ms=100), outcomes(200, seed=2, latency_ms=130), ANALYSIS
    )
    assert large_but_proportionate.verdict == "pass"  # 30 ms more but 1.3x


@pytest.mark.parametrize(("canary", "baseline"), [(99, 2000), (500, 99)])
def test_too_few_requests_on_either_side_waits(canary: int, baseline: int) -> None:
    result = compare(outcomes(baseline, seed=1), outcomes(canary, seed=2, error_rate=0.5), ANALYSIS)
    assert result.verdict == "wait"
    assert result.reasons == [
        f"the {side} has 99 requests in the window, fewer than the 100 needed"
        for side in (["canary"] if canary == 99 else ["baseline"])
    ]


def test_a_drop_of_accuracy_on_labelled_rows_fails() -> None:
    baseline = outcomes(2000, seed=1, prefix="b")
    canary = outcomes(200, seed=2, prefix="c")
    labels: dict[str, object] = {o.request_id: o.prediction for o in baseline if o.request_id}  # all right
    for i, o in enumerate(canary):  # the canary is right on 4 rows in 5
        assert o.request_id is not None
        labels[o.request_id] = o.prediction if i % 5 else "wrong"
    result = compare(baseline, canary, ANALYSIS, labels=labels)
    assert result.verdict == "fail" and result.metric == "accuracy"
    assert result.numbers["baseline_metric"] == 1.0 and result.numbers["canary_metric"] == pytest.approx(0.8)
    (reason,) = result.reasons
    assert reason == (
        "the canary's accuracy on labelled rows is 0.8 (200 rows) against the baseline's 1 (2000 rows): "
        "0.200 lower (more than 0.05)"
    )
    few = {key: value for key, value in labels.items() if key.startswith("b") or key in {"c1", "c2"}}
    assert compare(baseline, canary, ANALYSIS, labels=few).verdict == "pass"  # under min_labelled
    off = Analysis(max_metric_drop=None)
    assert compare(baseline, canary, off, labels=labels).verdict == "pass"


def test_a_relative_rmse_increase_fails_a_regressor() -> None:
    baseline = outcomes(1000, seed=1, values=(10, 1), prefix="b")
    canary = outcomes(200, seed=2, values=(10, 1), prefix="c")
    labels: dict[str, object] = {}
    for o in baseline:
        labels[str(o.request_id)] = float(o.prediction or 0) + 1.0  # rmse 1
    for o in canary:
        labels[str(o.request_id)] = float(o.prediction or 0) + 1.2  # rmse 1.2: 20 % worse
    result = compare(baseline, canary, ANALYSIS, labels=labels, task="regression")
    assert result.verdict == "fail" and result.metric == "rmse"
    assert result.numbers["metric_drop"] == pytest.approx(0.2)
    assert "20.00 % higher (more than 5.00 %)" in result.reasons[0]
    mae = compare(baseline, canary, ANALYSIS, labels=labels, task="regression", metric="mae")
    assert mae.metric == "mae" and mae.numbers["canary_metric"] == pytest.approx(1.2)


def test_f1_macro_matches_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    truth = [CLASSES[i] for i in rng.choice(3, 300)]
    predicted = [t if rng.random() < 0.7 else CLASSES[rng.choice(3)] for t in truth]
    rows = [Outcome(0.0, True, 0.001, p, str(i)) for i, p in enumerate(predicted)]
    value, count = metric_on_labels(rows, {str(i): t for i, t in enumerate(truth)}, "f1_macro")
    assert count == 300
    assert value == pytest.approx(f1_score(truth, predicted, average="macro"))


def test_a_shifted_prediction_distribution_fails() -> None:
    result = compare(outcomes(2000, seed=1), outcomes(200, seed=2, classes=(0.9, 0.05, 0.05)), ANALYSIS)
    assert result.verdict == "fail" and result.checks["distance"] is False
    assert "Jensen–Shannon distance" in result.reasons[0]
    regressor = compare(
        outcomes(2000, seed=1, values=(10, 1)),
        outcomes(200, seed=2, values=(13, 1)),
        ANALYSIS,
        task="regression",
    )
    assert regressor.verdict == "fail" and "predicted values" in regressor.reasons[0]
    same = compare(
        outcomes(2000, seed=1, values=(10, 1)),
        outcomes(200, seed=2, values=(10, 1)),
        ANALYSIS,
        task="regression",
    )
    assert same.verdict == "pass"


def test_the_jensen_shannon_distance_is_0_for_equal_and_1_for_disjoint_samples() -> None:
    assert prediction_distance(["a", "b"] * 50, ["b", "a"] * 5, classifier=True) == pytest.approx(0.0)
    assert prediction_distance(["a"] * 50, ["b"] * 5, classifier=True) == pytest.approx(1.0)
    assert prediction_distance([1.0, 2.0, 3.0] * 10, [100.0] * 10, classifier=False) == pytest.approx(1.0)
    assert prediction_distance([], ["a"], classifier=True) is None
    assert prediction_distance(["x"], [None], classifier=False) is None


# -- the window ---------------------------------------------------------------------------------


def _at(t: float) -> Outcome:
    return Outcome(t, True, 0.001, "a", None)


def test_the_window_returns_the_recent_outcomes_and_forgets_old_ones() -> None:
    window = OutcomeWindow(max_seconds=10, max_items=1000)
    for t in range(30):
        window.add(_at(float(t)))
    assert len(window) == 11  # 19..29: older than 10 s before the newest are dropped
    assert [o.at for o in window.recent(29.0, 3)] == [26.0, 27.0, 28.0, 29.0]
    assert [o.at for o in window.recent(100.0, 3)] == []
    assert len(window.recent(29.0, 1000)) == 11  # capped at max_seconds
    assert [o.at for o in window.latest(2)] == [27.0, 28.0, 29.0]  # the last traffic, however old
    window.clear()
    assert window.recent(29.0, 10) == [] and window.latest(10) == []


def test_the_window_keeps_at_most_max_items() -> None:
    window = OutcomeWindow(max_seconds=1000, max_items=50)
    for t in range(200):
        window.add(_at(t / 1000))
    assert len(window) == 50 and window.recent(1.0, 10)[0].at == pytest.approx(0.150)


def test_the_window_is_safe_across_threads() -> None:
    window = OutcomeWindow(max_seconds=1e9)

    def writer(offset: int) -> None:
        for i in range(5000):
            window.add(_at(offset + i))

    threads = [threading.Thread(target=writer, args=(k * 10_000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        window.recent(1e6, 1e9)
    for thread in threads:
        thread.join()
    assert len(window) == 20_000
