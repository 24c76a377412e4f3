"""performance(): observed metrics from joined feedback, the CBPE estimate, slices over time."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, mean_absolute_error, r2_score

from layerops.bundle import BundleMetadata, FeatureSchema, Lineage
from layerops.monitoring.performance import performance
from layerops.monitoring.records import proba_column

START = pd.Timestamp("2026-12-02T00:00", tz="UTC")
CLASSES = ["cat", "dog", "eel"]


def metadata(task: str, test_metrics: dict[str, float]) -> BundleMetadata:
    return BundleMetadata(
        name="pets",
        task=task,
        target="y",
        classes=CLASSES if task == "classification" else None,
        features=[FeatureSchema(name="x", dtype="float")],
        candidate="fake",
        metrics={"validation": {"accuracy": 0.5, "rmse": 9.0}, "test": test_metrics},
        lineage=Lineage(dataset_sha256="0", spec_sha256="0", seed=0),
        created_at="2026-12-01T00:00:00+00:00",
    )


def classifier_log(rows: int = 8) -> pd.DataFrame:
    """`rows` rows, two per request, one per hour; predictions cycle through the classes."""
    log = pd.DataFrame(
        {
            "request_id": [f"r{i // 2}" for i in range(rows)],
            "row": np.array([i % 2 for i in range(rows)], dtype=np.int32),
            "time": START + pd.to_timedelta(np.arange(rows), unit="h"),
            "prediction": [CLASSES[i % 3] for i in range(rows)],
        }
    )
    top = np.linspace(0.5, 0.9, rows)
    for j, label in enumerate(CLASSES):
        log[proba_column(label)] = [t if i % 3 == j else (1 - t) / 2 for i, t in enumerate(top)]
    return log


def feedback(entries: list[tuple[str, int, object, int]]) -> pd.DataFrame:
    """Feedback rows (request_id, row, label, minutes after START)."""
    return pd.DataFrame(
        {
            "request_id": [e[0] for e in entries],
            "row": np.array([e[1] for e in entries], dtype=np.int32),
            "label": [e[2] for e in entries],
            "time": [START + pd.Timedelta(minutes=e[3]) for e in entries],
        }
    )


def test_a_classifier_s_accuracy_is_observed_on_the_labelled_rows_and_estimated_on_all() -> None:
    log = classifier_log()  # predictions: cat dog eel cat dog eel cat dog
    labels = feedback(
        [
            ("r0", 0, "cat", 1),  # right
            ("r0", 1, "cat", 2),  # wrong (dog predicted)
            ("r1", 0, "eel", 3),  # right
            ("r1", 1, "dog", 4),  # wrong (cat predicted)...
            ("r1", 1, "cat", 90),  # ...corrected later: the latest label wins
            ("r9", 0, "dog", 5),  # a request the window does not hold
        ]
    )
    result = performance(metadata("classification", {"accuracy": 0.91, "f1_macro": 0.88}), log, labels)
    assert result is not None
    assert (result.metric, result.training, result.labelled_rows) == ("accuracy", 0.91, 4)
    assert result.observed == pytest.approx(3 / 4)
    expected_f1 = f1_score(
        ["cat", "cat", "eel", "cat"], ["cat", "dog", "eel", "cat"], average="macro", labels=CLASSES
    )
    assert result.others == {"f1_macro": pytest.approx(expected_f1)}
    assert result.estimated == pytest.approx(0.7)  # the mean top probability of all 8 rows
    assert result.estimated_metric == "accuracy"
    assert result.timeline == []


def test_feedback_arriving_in_any_order_keeps_the_latest_label() -> None:
    labels = feedback([("r0", 0, "eel", 50), ("r0", 0, "cat", 10)])
    result = performance(metadata("classification", {}), classifier_log(), labels)
    assert result is not None and result.observed == 0.0 and result.labelled_rows == 1
    assert result.training is None  # training recorded no test accuracy


def test_without_feedback_a_classifier_still_has_its_estimate() -> None:
    result = performance(metadata("classification", {"accuracy": 0.9}), classifier_log(), None)
    assert result is not None
    assert (result.observed, result.labelled_rows, result.others) == (None, 0, {})
    assert result.estimated == pytest.approx(0.7)


def test_nothing_to_report_without_feedback_or_probabilities() -> None:
    log = classifier_log().drop(columns=[proba_column(label) for label in CLASSES])
    assert performance(metadata("classification", {}), log, None) is None
    assert performance(metadata("classification", {}), log, feedback([])) is None


def regressor_log() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "request_id": ["a", "b", "c", "d", "e"],
            "row": np.zeros(5, dtype=np.int32),
            "time": START + pd.to_timedelta(np.arange(5), unit="h"),
            "prediction": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )


def test_a_regressor_s_rmse_mae_and_r2_on_the_labelled_rows() -> None:
    labels = feedback([("a", 0, 1.5, 1), ("b", 0, 2.0, 1), ("d", 0, 6.0, 1)])
    result = performance(metadata("regression", {"rmse": 0.7, "mae": 0.5}), regressor_log(), labels)
    assert result is not None
    truth, predicted = [1.5, 2.0, 6.0], [1.0, 2.0, 4.0]
    assert (result.metric, result.training, result.labelled_rows) == ("rmse", 0.7, 3)
    assert result.observed == pytest.approx(math.sqrt((0.25 + 0 + 4) / 3))
    assert result.others == {
        "mae": pytest.approx(mean_absolute_error(truth, predicted)),
        "r2": pytest.approx(r2_score(truth, predicted)),
    }
    assert (result.estimated, result.estimated_metric) == (None, None)


def test_a_regressor_without_feedback_has_nothing_to_report() -> None:
    assert performance(metadata("regression", {"rmse": 0.7}), regressor_log(), None) is None
    assert (
        performance(metadata("regression", {"rmse": 0.7}), regressor_log(), feedback([("zz", 0, 1.0, 1)]))
        is None
    )


def test_one_labelled_regression_row_has_no_r2() -> None:
    result = performance(metadata("regression", {}), regressor_log(), feedback([("c", 0, 4.0, 1)]))
    assert result is not None and result.observed == 1.0 and result.others == {"mae": 1.0}


def test_the_timeline_has_observed_and_estimated_values_per_slice() -> None:
    log = classifier_log()  # 8 rows, one per hour over 7 hours
    labels = feedback([("r0", 0, "cat", 1), ("r0", 1, "cat", 1), ("r3", 1, "dog", 1)])
    result = performance(metadata("classification", {}), log, labels, slices=2)
    assert result is not None and len(result.timeline) == 2
    first, second = result.timeline
    assert (first.start, second.end) == (
        START.to_pydatetime(),
        (START + pd.Timedelta(hours=7)).to_pydatetime(),
    )
    assert (first.rows, first.labelled, first.observed) == (4, 2, 0.5)
    assert (second.rows, second.labelled, second.observed) == (4, 1, 1.0)
    top = np.linspace(0.5, 0.9, 8)
    assert first.estimated == pytest.approx(top[:4].mean())
    assert second.estimated == pytest.approx(top[4:].mean())


def test_slices_without_labels_have_no_observed_value() -> None:
    result = performance(metadata("classification", {}), classifier_log(), None, slices=4)
    assert result is not None
    assert [(p.rows, p.labelled, p.observed) for p in result.timeline] == [(2, 0, None)] * 4
