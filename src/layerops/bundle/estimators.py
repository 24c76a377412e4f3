"""Rule-based baselines: one threshold on one preprocessed feature, the bar every model must beat.

Both estimators follow the scikit-learn contract and work on the numeric matrix that the
preprocessing step produces. The learned rule is `X[:, feature_] <= threshold_` → left leaf,
otherwise (including NaN) → right leaf. Without a useful split `feature_` is -1 and both leaves
hold the training prior (class frequencies or the mean). Ties between candidate splits go to
the lowest feature index, then the lowest threshold, so fitting is deterministic.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

FloatArray = npt.NDArray[np.float64]

# An improvement smaller than this (relative to the parent impurity) is noise, not a rule.
_MIN_GAIN = 1e-12


def _candidate_splits(column: FloatArray, min_samples_leaf: int) -> tuple[npt.NDArray[np.intp], FloatArray]:
    """Positions `i` in the sorted column where a split between `i` and `i + 1` is allowed."""
    n = column.size
    positions = np.flatnonzero(column[:-1] < column[1:])
    left_sizes = positions + 1
    keep = (left_sizes >= min_samples_leaf) & (n - left_sizes >= min_samples_leaf)
    positions = positions[keep]
    low, high = column[positions], column[positions + 1]
    thresholds = low + (high - low) / 2.0
    # Between adjacent floats the midpoint can round up to `high`; `low` then splits the same way.
    thresholds = np.where(thresholds < high, thresholds, low)
    return positions, thresholds


def _best_split(
    X: FloatArray,
    leaf_impurity: Any,
    stats: FloatArray,
    min_samples_leaf: int,
) -> tuple[int, float, float]:
    """Lowest total impurity over all features and thresholds: (feature, threshold, impurity)."""
    best = (-1, float(np.inf), float(np.inf))
    total = stats.sum(axis=0)
    for feature in range(X.shape[1]):
        order = np.argsort(X[:, feature], kind="stable")
        column = X[order, feature]
        positions, thresholds = _candidate_splits(column, min_samples_leaf)
        if positions.size == 0:
            continue
        left = np.cumsum(stats[order], axis=0)[positions]
        impurity = leaf_impurity(left) + leaf_impurity(total - left)
        index = int(np.argmin(impurity))
        if impurity[index] < best[2]:
            best = (feature, float(thresholds[index]), float(impurity[index]))
    return best


def _gini_total(counts: FloatArray) -> FloatArray:
    """Size-weighted Gini impurity of leaves given their class counts (one leaf per row)."""
    size = counts.sum(axis=-1)
    safe = np.where(size > 0, size, 1.0)
    return np.asarray(size - (counts**2).sum(axis=-1) / safe, dtype=np.float64)


def _sse_total(moments: FloatArray) -> FloatArray:
    """Sum of squared errors around the leaf mean given (count, sum, sum of squares) per row."""
    count, total, squares = moments[..., 0], moments[..., 1], moments[..., 2]
    safe = np.where(count > 0, count, 1.0)
    return np.asarray(squares - total**2 / safe, dtype=np.float64)


def _apply_rule(X: FloatArray, feature: int, threshold: float) -> npt.NDArray[np.bool_]:
    """True where a row falls in the left leaf; everything goes right without a rule."""
    if feature < 0:
        return np.zeros(X.shape[0], dtype=bool)
    return np.asarray(X[:, feature] <= threshold)


class OneRuleClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """One threshold on one feature, each side predicting its training class frequencies."""

    def __init__(self, min_samples_leaf: int = 1) -> None:
        self.min_samples_leaf = min_samples_leaf

    def fit(self, X: Any, y: Any) -> OneRuleClassifier:
        """Learn the split with the lowest weighted Gini impurity; return self."""
        X_checked, y_checked = check_X_y(X, y, dtype=np.float64)
        self.classes_, encoded = np.unique(y_checked, return_inverse=True)
        self.n_features_in_ = X_checked.shape[1]
        counts = np.eye(self.classes_.size)[encoded]
        prior = counts.mean(axis=0)
        parent = float(_gini_total(counts.sum(axis=0)))
        feature, threshold, impurity = _best_split(
            X_checked, _gini_total, counts, max(1, self.min_samples_leaf)
        )
        if feature < 0 or impurity >= parent - _MIN_GAIN * max(parent, 1.0):
            self.feature_, self.threshold_ = -1, float("inf")
            self.left_value_, self.right_value_ = prior.copy(), prior.copy()
            return self
        left = _apply_rule(X_checked, feature, threshold)
        self.feature_, self.threshold_ = feature, threshold
        self.left_value_ = counts[left].mean(axis=0)
        self.right_value_ = counts[~left].mean(axis=0)
        return self

    def predict_proba(self, X: Any) -> FloatArray:
        """Class frequencies of the leaf each row falls in, columns in `classes_` order."""
        check_is_fitted(self, "left_value_")
        X_checked = check_array(X, dtype=np.float64, ensure_all_finite="allow-nan")
        left = _apply_rule(X_checked, self.feature_, self.threshold_)
        proba = np.where(left[:, None], self.left_value_[None, :], self.right_value_[None, :])
        return np.asarray(proba, dtype=np.float64)

    def predict(self, X: Any) -> npt.NDArray[Any]:
        """The most frequent training class of each row's leaf (first class on ties)."""
        return np.asarray(self.classes_[np.argmax(self.predict_proba(X), axis=1)])


class OneRuleRegressor(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """One threshold on one feature, each side predicting its training mean."""

    def __init__(self, min_samples_leaf: int = 1) -> None:
        self.min_samples_leaf = min_samples_leaf

    def fit(self, X: Any, y: Any) -> OneRuleRegressor:
        """Learn the split with the lowest sum of squared errors; return self."""
        X_checked, y_checked = check_X_y(X, y, dtype=np.float64, y_numeric=True)
        target = np.asarray(y_checked, dtype=np.float64)
        self.n_features_in_ = X_checked.shape[1]
        mean = float(target.mean())
        centred = target - mean  # centring keeps the running sums of squares accurate
        moments = np.column_stack([np.ones_like(centred), centred, centred**2])
        parent = float(_sse_total(moments.sum(axis=0)))
        feature, threshold, impurity = _best_split(
            X_checked, _sse_total, moments, max(1, self.min_samples_leaf)
        )
        if feature < 0 or impurity >= parent - _MIN_GAIN * max(parent, 1.0):
            self.feature_, self.threshold_ = -1, float("inf")
            self.left_value_ = self.right_value_ = mean
            return self
        left = _apply_rule(X_checked, feature, threshold)
        self.feature_, self.threshold_ = feature, threshold
        self.left_value_ = float(target[left].mean())
        self.right_value_ = float(target[~left].mean())
        return self

    def predict(self, X: Any) -> FloatArray:
        """The training mean of each row's leaf."""
        check_is_fitted(self, "left_value_")
        X_checked = check_array(X, dtype=np.float64, ensure_all_finite="allow-nan")
        left = _apply_rule(X_checked, self.feature_, self.threshold_)
        return np.where(left, self.left_value_, self.right_value_).astype(np.float64)
