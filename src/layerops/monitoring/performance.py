"""Model quality over a logged window: observed from ground-truth feedback, estimated without it.

Feedback joins the log on (`request_id`, `row`); when a row got several labels, the latest
`time` wins. Classifiers: accuracy (the primary metric) and f1_macro over the model's classes,
as training computes them, plus the confidence-based estimate of accuracy (CBPE: the mean top
class probability of every row, labelled or not). Regressors: rmse (primary), mae and r2; no
estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error, r2_score

from layerops.monitoring.records import classes_of, proba_column
from layerops.monitoring.results import Performance, PerformancePoint
from layerops.monitoring.stats import TimeSlices

if TYPE_CHECKING:
    from layerops.bundle.metadata import BundleMetadata

_KEYS = ["request_id", "row"]

Rows = npt.NDArray[np.intp]


def performance(
    metadata: BundleMetadata, log: pd.DataFrame, feedback: pd.DataFrame | None, *, slices: int = 0
) -> Performance | None:
    """The window's performance next to the training test metric of the same name.

    `log` and `feedback` have the columns of `records.py`; with `slices` > 0 the window is cut by
    time into that many equal slices (`Performance.timeline`). None when there is nothing to
    report: no labelled row and, for a classifier, no predicted probabilities.
    """
    joined = _Joined.of(metadata, log, feedback)
    everything = np.arange(len(log), dtype=np.intp)
    estimated = joined.estimate(everything)
    if not joined.labelled.any() and estimated is None:
        return None
    measured = joined.metrics(everything)
    return Performance(
        metric=joined.metric,
        training=metadata.metrics.get("test", {}).get(joined.metric),
        observed=measured.pop(joined.metric, None),
        labelled_rows=int(joined.labelled.sum()),
        estimated=estimated,
        estimated_metric="accuracy" if estimated is not None else None,
        others=measured,
        timeline=_timeline(log, joined, slices),
    )


@dataclass(frozen=True)
class _Joined:
    """The window's rows with their ground truth, aligned by position."""

    classifier: bool
    classes: list[str]
    truth: pd.Series[Any]
    """Each row's label (missing: no feedback)."""
    predicted: pd.Series[Any]
    labelled: npt.NDArray[np.bool_]
    confidence: pd.Series[Any] | None
    """Each row's top class probability (None: not a classifier, or no probabilities logged)."""

    @property
    def metric(self) -> str:
        return "accuracy" if self.classifier else "rmse"

    @classmethod
    def of(cls, metadata: BundleMetadata, log: pd.DataFrame, feedback: pd.DataFrame | None) -> _Joined:
        classifier = metadata.task == "classification"
        truth = _labels(log, feedback)
        predicted = (
            log["prediction"] if "prediction" in log else pd.Series(None, index=log.index, dtype=object)
        )
        predicted = predicted.reset_index(drop=True)
        labelled = np.asarray(truth.notna() & predicted.notna(), dtype=np.bool_)
        confidence = _confidence(log) if classifier else None
        return cls(classifier, list(metadata.classes or []), truth, predicted, labelled, confidence)

    def metrics(self, rows: Rows) -> dict[str, float]:
        """Every metric of the task on the labelled ones of `rows` (undefined ones left out)."""
        mine = rows[self.labelled[rows]]
        if mine.size == 0:
            return {}
        truth, predicted = self.truth.iloc[mine], self.predicted.iloc[mine]
        if self.classifier:
            return _classification(
                truth.astype(str).to_numpy(), predicted.astype(str).to_numpy(), self.classes
            )
        return _regression(_numbers(truth), _numbers(predicted))

    def estimate(self, rows: Rows) -> float | None:
        """The mean top class probability over `rows` (None: no probabilities there)."""
        if self.confidence is None:
            return None
        values = self.confidence.iloc[rows]
        return float(values.mean()) if values.notna().any() else None


def _labels(log: pd.DataFrame, feedback: pd.DataFrame | None) -> pd.Series[Any]:
    """Each logged row's label by position (missing: no feedback), the latest per key."""
    if feedback is None or feedback.empty or not set(_KEYS) <= set(log.columns):
        return pd.Series(None, index=pd.RangeIndex(len(log)), dtype=object)
    if "time" in feedback:
        feedback = feedback.sort_values("time", kind="stable")
    latest = feedback.drop_duplicates(_KEYS, keep="last")
    keys = log[_KEYS].astype({"request_id": str, "row": np.int64})
    labels = latest[[*_KEYS, "label"]].astype({"request_id": str, "row": np.int64})
    joined = keys.merge(labels, on=_KEYS, how="left", validate="many_to_one")
    return joined["label"].reset_index(drop=True)


def _confidence(log: pd.DataFrame) -> pd.Series[Any] | None:
    """Each row's top class probability (None: the log has no probabilities)."""
    columns = [proba_column(label) for label in classes_of(log.columns)]
    if not columns:
        return None
    return log[columns].astype(np.float64).max(axis=1, skipna=True).reset_index(drop=True)


def _numbers(values: pd.Series[Any]) -> npt.NDArray[np.float64]:
    return np.asarray(pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))


def _classification(
    truth: npt.NDArray[Any], predicted: npt.NDArray[Any], classes: list[str]
) -> dict[str, float]:
    """Accuracy and macro F1 over the model's classes (and any other label seen), as training."""
    labels = classes + sorted((set(truth) | set(predicted)) - set(classes))
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "f1_macro": float(f1_score(truth, predicted, average="macro", labels=labels, zero_division=0)),
    }


def _regression(truth: npt.NDArray[np.float64], predicted: npt.NDArray[np.float64]) -> dict[str, float]:
    """rmse, mae and (on two rows or more) r2 over the rows where both are numbers."""
    kept = ~(np.isnan(truth) | np.isnan(predicted))
    if not kept.any():
        return {}
    truth, predicted = truth[kept], predicted[kept]
    scores = {
        "rmse": math.sqrt(float(mean_squared_error(truth, predicted))),
        "mae": float(mean_absolute_error(truth, predicted)),
    }
    if truth.size > 1:
        scores["r2"] = float(r2_score(truth, predicted))
    return scores


def _timeline(log: pd.DataFrame, joined: _Joined, slices: int) -> list[PerformancePoint]:
    """Observed and estimated performance per time slice (empty: no slices or no time column)."""
    if slices <= 0 or "time" not in log:
        return []
    times = pd.to_datetime(log["time"], utc=True).dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    cut = TimeSlices.of(np.asarray(times), slices)
    points = []
    for s, rows in enumerate(cut.groups(np.arange(len(log), dtype=np.intp))):
        start, end = cut.span(s)
        observed = joined.metrics(rows).get(joined.metric)
        labelled = int(joined.labelled[rows].sum())
        points.append(PerformancePoint(start, end, int(rows.size), labelled, observed, joined.estimate(rows)))
    return points
