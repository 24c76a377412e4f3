"""The paired bootstrap of a metric difference between two models scored on the same rows.

Round `r` resamples the rows once: its indices are the `r`-th call of
`numpy.random.default_rng(seed).integers(0, rows, rows)`, and both models are scored on those
same rows, so the interval is the one of the *difference* (row difficulty cancels out). A chunk
of rounds is held as a weights matrix (rows × rounds: how often each row was drawn), and each
metric is a product of per-row statistics with it (sparse one-hot rows for per-class counts and
for ROC AUC's tie groups of scores, whose cumulative sums give the Mann–Whitney statistic).

The values equal scikit-learn's metric on the resampled rows to rounding: `accuracy_score`,
`f1_score(average="macro", labels=all, zero_division=0)`, `log_loss(labels=all)`,
`roc_auc_score` (one-vs-rest macro for more than two classes), `mean_squared_error`
(square-rooted), `mean_absolute_error`, `r2_score`. 1,000 rounds on 20,000 rows take a few
tenths of a second (ROC AUC, at most `ROC_AUC_ROUNDS` rounds: about a second for three classes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse
from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

from layerops.errors import LayeropsError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

CLASSIFICATION_METRICS = ("accuracy", "f1_macro", "roc_auc", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
"""The spec's metrics (`layerops.spec`, which the server may not import, so not imported here)."""

CHUNK_CELLS = 500_000
"""Weights held at once (rows × rounds per chunk): 4 MB of float64, so that the passes over a
chunk's per-round arrays stay in the processor's cache."""
ROC_AUC_ROUNDS = 300
"""Most rounds ROC AUC is resampled with: each round costs a cumulative sum over the score's tie
groups per class (about a second for 1,000 rounds of 20,000 rows per class)."""
MIN_VALID_SHARE = 0.5
"""Fewer rounds with a defined metric than this share leave the interval undefined."""


@dataclass(frozen=True)
class Outputs:
    """One model's outputs on the evaluation rows, with the truth, in a shared label space."""

    truth: npt.NDArray[np.float64] | IntArray
    """Class codes into the shared labels (classification) or true values (regression)."""
    predictions: npt.NDArray[np.float64] | IntArray
    """Predicted class codes, or predicted values."""
    probabilities: FloatArray | None = None
    """Rows × shared labels, each row summing to one (classification)."""


@dataclass(frozen=True)
class Interval:
    """A paired bootstrap: the point difference on all rows and its percentile interval."""

    difference: float
    """Challenger minus incumbent on all rows, oriented so that higher is better."""
    low: float | None
    high: float | None
    rounds: int
    """Rounds whose metric was defined for both models (None bounds when too few)."""


def resample_weights(rows: int, rounds: int, seed: int) -> Iterator[FloatArray]:
    """The rounds as weights, a chunk at a time: rows × rounds, how often each row was drawn."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, min(rounds, CHUNK_CELLS // max(rows, 1)))
    done = 0
    while done < rounds:
        chunk = np.empty((min(per_chunk, rounds - done), rows), dtype=np.float64)
        for r in range(len(chunk)):
            chunk[r] = np.bincount(rng.integers(0, rows, rows), minlength=rows)
        done += len(chunk)
        yield np.ascontiguousarray(chunk.T)


def metric_values(metric: str, outputs: Outputs, weights: FloatArray) -> FloatArray:
    """`metric` of `outputs` in each round of `weights` (rows × rounds), NaN where undefined
    (e.g. ROC AUC on a resample with one class only)."""
    compute = _METRICS.get(metric)
    if compute is None:
        raise LayeropsError(f"the promotion gate cannot compare models on metric {metric!r}")
    return np.asarray(compute(outputs, weights), dtype=np.float64)


def full_value(metric: str, outputs: Outputs) -> float:
    """`metric` on all rows (NaN where undefined)."""
    return float(metric_values(metric, outputs, np.ones((len(outputs.truth), 1)))[0])


def paired(
    metric: str,
    challenger: Outputs,
    incumbent: Outputs,
    *,
    higher_is_better: bool,
    resamples: int,
    confidence: float,
    seed: int,
) -> Interval:
    """The difference challenger − incumbent in `metric` (negated when lower is better) on all
    rows, and its `confidence` percentile interval (`numpy.percentile`, linear) over `resamples`
    paired rounds (at most `ROC_AUC_ROUNDS` for ROC AUC); rounds where the metric is undefined
    for either model are left out."""
    sign = 1.0 if higher_is_better else -1.0
    point = sign * (full_value(metric, challenger) - full_value(metric, incumbent))
    rows = len(challenger.truth)
    rounds = min(resamples, ROC_AUC_ROUNDS) if metric == "roc_auc" else resamples
    # The products are thin (a few columns): BLAS threads only wait for each other, and on a
    # shared machine their spinning made a round four times slower.
    with threadpool_limits(limits=1, user_api="blas"):
        parts = [
            sign * (metric_values(metric, challenger, chunk) - metric_values(metric, incumbent, chunk))
            for chunk in resample_weights(rows, rounds, seed)
        ]
    differences = np.concatenate(parts) if parts else np.empty(0)
    defined = differences[np.isfinite(differences)]
    if len(defined) < max(1, MIN_VALID_SHARE * rounds):
        return Interval(point, None, None, len(defined))
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(defined, [tail, 100.0 - tail])
    return Interval(point, float(low), float(high), len(defined))


def _mean(weights: FloatArray, values: FloatArray) -> FloatArray:
    mean: FloatArray = np.asarray(values @ weights, dtype=np.float64) / weights.shape[0]
    return mean


def _errors(outputs: Outputs) -> FloatArray:
    return np.asarray(outputs.predictions, dtype=np.float64) - np.asarray(outputs.truth, dtype=np.float64)


def _accuracy(outputs: Outputs, weights: FloatArray) -> FloatArray:
    return _mean(weights, np.asarray(outputs.predictions == outputs.truth, dtype=np.float64))


def _log_loss(outputs: Outputs, weights: FloatArray) -> FloatArray:
    assert outputs.probabilities is not None
    truth = np.asarray(outputs.truth, dtype=np.intp)
    picked = outputs.probabilities[np.arange(len(truth)), truth]
    eps = np.finfo(np.float64).eps
    return _mean(weights, -np.log(np.clip(picked, eps, 1.0 - eps)))


def _rmse(outputs: Outputs, weights: FloatArray) -> FloatArray:
    errors = _errors(outputs)
    return np.sqrt(_mean(weights, errors * errors))


def _mae(outputs: Outputs, weights: FloatArray) -> FloatArray:
    return _mean(weights, np.abs(_errors(outputs)))


def _r2(outputs: Outputs, weights: FloatArray) -> FloatArray:
    truth = np.asarray(outputs.truth, dtype=np.float64)
    centred = truth - truth.mean()  # keeps the sums of squares below from cancelling
    errors = _errors(outputs)
    residual, total, squares = np.vstack([errors * errors, centred, centred * centred]) @ weights
    spread = squares - total**2 / weights.sum(axis=0)
    ratio = np.divide(residual, spread, out=np.full(weights.shape[1], np.nan), where=spread > 0)
    return np.asarray(1.0 - ratio, dtype=np.float64)


def _one_hot(codes: IntArray, width: int, values: FloatArray | None = None) -> sparse.csr_matrix:
    """Width × rows: row `k` marks (with `values`, else 1) the rows whose code is `k`."""
    rows = len(codes)
    data = np.ones(rows) if values is None else values
    return sparse.csr_matrix((data, (codes, np.arange(rows))), shape=(width, rows))


def _f1_macro(outputs: Outputs, weights: FloatArray) -> FloatArray:
    assert outputs.probabilities is not None
    labels = outputs.probabilities.shape[1]
    truth = np.asarray(outputs.truth, dtype=np.intp)
    predicted = np.asarray(outputs.predictions, dtype=np.intp)
    hits = np.asarray(truth == predicted, dtype=np.float64)
    true_positives = np.asarray(_one_hot(truth, labels, hits) @ weights)  # labels × rounds
    support = np.asarray(_one_hot(truth, labels) @ weights) + np.asarray(
        _one_hot(predicted, labels) @ weights
    )
    scores = np.divide(2.0 * true_positives, support, out=np.zeros_like(support), where=support > 0)
    return np.asarray(scores.mean(axis=0), dtype=np.float64)


def _binary_auc(positive: npt.NDArray[np.bool_], scores: FloatArray, weights: FloatArray) -> FloatArray:
    """ROC AUC per round: the Mann–Whitney statistic, ties counted half (the trapezoidal area)."""
    _, groups = np.unique(scores, return_inverse=True)  # tie groups, in increasing score order
    groups = np.asarray(groups, dtype=np.intp).reshape(-1)
    width = int(groups.max()) + 1
    drawn_positive = np.asarray(_one_hot(groups, width, positive.astype(np.float64)) @ weights)
    drawn_negative = np.asarray(_one_hot(groups, width, (~positive).astype(np.float64)) @ weights)
    up_to = np.cumsum(drawn_negative, axis=0)  # negatives scored at or below each group
    area = (drawn_positive * (up_to - 0.5 * drawn_negative)).sum(axis=0)
    pairs = drawn_positive.sum(axis=0) * up_to[-1]
    return np.asarray(
        np.divide(area, pairs, out=np.full(weights.shape[1], np.nan), where=pairs > 0), np.float64
    )


def _roc_auc(outputs: Outputs, weights: FloatArray) -> FloatArray:
    assert outputs.probabilities is not None
    truth = np.asarray(outputs.truth, dtype=np.intp)
    labels = outputs.probabilities.shape[1]
    if labels == 2:
        return _binary_auc(truth == 1, outputs.probabilities[:, 1], weights)
    per_class = [_binary_auc(truth == c, outputs.probabilities[:, c], weights) for c in range(labels)]
    return np.asarray(np.mean(per_class, axis=0), dtype=np.float64)  # NaN when a class is absent


_METRICS: dict[str, Callable[[Outputs, FloatArray], FloatArray]] = {
    "accuracy": _accuracy,
    "f1_macro": _f1_macro,
    "log_loss": _log_loss,
    "roc_auc": _roc_auc,
    "rmse": _rmse,
    "mae": _mae,
    "r2": _r2,
}
