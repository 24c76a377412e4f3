"""Drift of a logged window against the training reference: `DriftDetector.fit(...).score(log)`.

Verdict rules (thresholds from the bundle's `monitoring` config, per feature or for the predictions):

- numeric feature (and a regressor's predictions): two-sample KS against the bundle's reference
  sample; drifted iff p < `p_value` and D >= `ks_statistic`. Wasserstein and PSI (on the
  reference sample's quantile bins) are reported too.
- categorical feature (and a classifier's predicted labels): chi-square test of homogeneity
  against the profile's counts (share * count, rounded), each category unseen in training a bin
  of its own; drifted iff p < `p_value` and PSI >= `psi`.

Missing values are left out of the tests (their share is reported); a window or time slice with
fewer than `min_rows` non-missing values is not tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from layerops.errors import DataError
from layerops.monitoring.records import input_column
from layerops.monitoring.results import Distribution, DriftReport, FeatureDrift, WindowDrift
from layerops.monitoring.stats import (
    Array,
    TimeSlices,
    chi_square,
    ks_sorted,
    numeric_bins,
    prepare,
    psi,
    sorted_shares,
    utc_moment,
    wasserstein_sorted,
)

if TYPE_CHECKING:
    from layerops.bundle.metadata import BundleMetadata
    from layerops.drift_thresholds import MonitoringConfig

PREDICTION = "prediction"
"""The name the predictions go by in a report (and their log column)."""

_RETRAIN = "retrain it with layerops >= 0.3 to monitor drift"


@dataclass(frozen=True)
class _Numeric:
    """A numeric reference: the sorted sample, its PSI bins and its shares in them."""

    values: Array
    edges: Array
    shares: Array


@dataclass(frozen=True)
class _Categorical:
    """A categorical reference: the profile's categories, counts and shares."""

    categories: tuple[str, ...]
    counts: Array
    shares: Array


@dataclass(frozen=True)
class _Rule:
    """A verdict rule: drifted iff p < `p_value` and the effect size is at least `effect`."""

    p_value: float
    effect: float
    effect_name: str

    def text(self) -> str:
        return f"p < {self.p_value:g} and {self.effect_name} >= {self.effect:g}"


@dataclass(frozen=True)
class _Verdict:
    """One test's outcome: the deciding statistic, its p-value, the verdict, every statistic."""

    statistic: float
    p_value: float
    drifted: bool
    statistics: dict[str, float]


@dataclass(frozen=True)
class _Outcome:
    """One feature over the window: its verdict (None: too few rows) and one per time slice."""

    verdict: _Verdict | None
    counted: int
    """Non-missing values in the window."""
    missing_share: float
    reference_rows: int
    distribution: Distribution | None
    slices: list[_Verdict | None]


class DriftDetector:
    """Tests a logged window's features and predictions against a bundle's training reference.

    `fit(metadata, reference)` learns the reference (the profile and the raw reference sample);
    `score(log)` returns a `DriftReport` whose `performance` is left None.
    """

    def __init__(self, config: MonitoringConfig | None = None, *, bins: int = 10, exact: bool = True) -> None:
        self.config = config
        self.bins = bins
        self.exact = exact
        """False: asymptotic KS p-values for the window too (time slices always use them)."""

    def get_params(self) -> dict[str, Any]:
        """The constructor's parameters (the estimator contract)."""
        return {"config": self.config, "bins": self.bins, "exact": self.exact}

    def fit(
        self, metadata: BundleMetadata, reference: pd.DataFrame | None, *, version: int | None = None
    ) -> DriftDetector:
        """Learn the references of every feature and of the predictions; returns self.

        `version` names the model version in messages and the report (default: the log's).
        Raises `DataError` when the bundle has no reference profile or a numeric feature no
        reference sample (both: bundles trained before monitoring existed).
        """
        label = f"model {metadata.name}" + (f" v{version}" if version is not None else "")
        profile = metadata.reference_profile
        if not profile:
            raise DataError(f"{label} has no reference profile: {_RETRAIN}")
        config = self.config or metadata.monitoring
        summaries = profile.get("features", {})
        self.references_ = {
            name: self._reference(label, name, summaries, reference) for name in metadata.feature_names()
        }
        self.rules_ = {name: _rule(config, name, ref) for name, ref in self.references_.items()}
        prediction, self.notes_ = self._prediction_reference(profile.get("predictions"))
        if prediction is not None:
            self.references_[PREDICTION] = prediction
            self.rules_[PREDICTION] = _rule(config, None, prediction)
        self.metadata_, self.version_, self.min_rows_ = metadata, version, config.min_rows
        return self

    def _reference(
        self, label: str, name: str, summaries: dict[str, Any], sample: pd.DataFrame | None
    ) -> _Numeric | _Categorical:
        summary = summaries.get(name)
        if summary is None:
            raise DataError(f"{label}: the reference profile has no feature {name!r}: {_RETRAIN}")
        if summary.get("kind") == "categorical":
            return _categorical_reference(summary)
        values = prepare(_numbers(sample[name])) if sample is not None and name in sample else prepare([])
        if values.size == 0:
            raise DataError(f"{label} has no reference sample of feature {name!r}: {_RETRAIN}")
        return self._numeric_reference(values)

    def _numeric_reference(self, ordered: Array) -> _Numeric:
        edges = numeric_bins(ordered, self.bins)
        return _Numeric(ordered, edges, sorted_shares(ordered, edges))

    def _prediction_reference(
        self, summary: dict[str, Any] | None
    ) -> tuple[_Numeric | _Categorical | None, list[str]]:
        """The predictions' reference, or None and why (older regression profiles keep no sample)."""
        if not summary:
            return None, [f"predictions not tested: the reference profile has none ({_RETRAIN})"]
        if summary.get("kind") == "categorical":
            return _categorical_reference(summary), []
        sample = prepare(summary.get("sample") or [])
        if sample.size == 0:
            return None, [f"predictions not tested: the profile keeps no sample of them ({_RETRAIN})"]
        return self._numeric_reference(sample), []

    def score(self, current: pd.DataFrame, *, window: str = "", slices: int = 0) -> DriftReport:
        """Test the log frame `current` (columns of `records.py`) against the reference.

        `window` describes the window in words; with `slices` > 0 the window is cut by time into
        that many equal slices, each tested on its own (`DriftReport.timeline`). Raises
        `DataError` when a feature's `input.<feature>` column is absent.
        """
        columns, notes = self._columns(current)
        times = _times(current)
        cut = TimeSlices.of(times, slices) if slices > 0 and times is not None else None
        if slices > 0 and cut is None:
            notes.append("no drift over time: the log has no time column")
        outcomes = {name: self._feature(name, current[column], cut) for name, column in columns.items()}
        drifts = {name: self._drift(name, outcome) for name, outcome in outcomes.items()}
        prediction = drifts.pop(PREDICTION, None)
        known = times[~np.isnat(times)].view(np.int64) if times is not None else np.array([], np.int64)
        return DriftReport(
            model=self.metadata_.name,
            version=self.version_ if self.version_ is not None else _log_version(current),
            task=self.metadata_.task,
            window=window,
            start=utc_moment(int(known.min())) if known.size else None,
            end=utc_moment(int(known.max())) if known.size else None,
            rows=len(current),
            features=sorted(drifts.values(), key=lambda f: (not f.drifted, _p_or_untested(f))),
            prediction=prediction,
            timeline=_timeline(cut, outcomes) if cut is not None else [],
            notes=notes,
        )

    def _columns(self, current: pd.DataFrame) -> tuple[dict[str, str], list[str]]:
        """Each tested name's log column, and notes on what is not tested."""
        notes = list(self.notes_)
        columns = {name: input_column(name) for name in self.references_ if name != PREDICTION}
        if PREDICTION in self.references_ and PREDICTION not in current:
            notes.append("predictions not tested: the log has no prediction column")
        elif PREDICTION in self.references_:
            columns[PREDICTION] = PREDICTION
        absent = [column for column in columns.values() if column not in current]
        if absent:
            raise DataError(f"the log of model {self.metadata_.name} has no column {absent[0]!r}")
        return columns, notes

    def _feature(self, name: str, column: pd.Series[Any], cut: TimeSlices | None) -> _Outcome:
        """One feature's tests over the window and its time slices."""
        reference, rule = self.references_[name], self.rules_[name]
        if isinstance(reference, _Numeric):
            values = _numbers(column)
            present = prepare(values)
            return _Outcome(
                self._numeric(reference, present, rule, full=True),
                present.size,
                _missing_share(values.size, present.size),
                reference.values.size,
                _numeric_distribution(reference, present) if present.size else None,
                [self._numeric(reference, prepare(part), rule) for part in cut.groups(values)] if cut else [],
            )
        bins, categories = _category_bins(column, reference.categories)
        counts = np.bincount(bins[bins >= 0], minlength=len(categories)).astype(np.float64)
        return _Outcome(
            self._categorical(reference, counts, rule),
            int(counts.sum()),
            _missing_share(bins.size, int(counts.sum())),
            int(reference.counts.sum()),
            _categorical_distribution(reference, categories, counts) if counts.sum() else None,
            [self._categorical(reference, part, rule) for part in cut.counts(bins, counts.size)]
            if cut
            else [],
        )

    def _drift(self, name: str, outcome: _Outcome) -> FeatureDrift:
        """The report's entry for one feature (or the predictions)."""
        numeric = isinstance(self.references_[name], _Numeric)
        verdict, rows = outcome.verdict, outcome.counted
        return FeatureDrift(
            feature=name,
            kind="numeric" if numeric else "categorical",
            test="ks" if numeric else "chi2",
            statistic=verdict.statistic if verdict else None,
            p_value=verdict.p_value if verdict else None,
            threshold=self.rules_[name].text(),
            drifted=bool(verdict and verdict.drifted),
            reference_rows=outcome.reference_rows,
            current_rows=rows,
            statistics={**(verdict.statistics if verdict else {}), "missing_share": outcome.missing_share},
            note=None if verdict else f"too few rows ({rows} < {self.min_rows_})",
            distribution=outcome.distribution,
        )

    def _numeric(
        self, reference: _Numeric, current: Array, rule: _Rule, *, full: bool = False
    ) -> _Verdict | None:
        """KS decides; with `full`, Wasserstein and PSI too. None: too few rows."""
        if current.size < self.min_rows_:
            return None
        statistic, p_value = ks_sorted(reference.values, current, exact=full and self.exact)
        statistics = {"ks": statistic, "ks_p_value": p_value}
        if full:
            statistics["wasserstein"] = wasserstein_sorted(reference.values, current)
            statistics["psi"] = psi(reference.shares, sorted_shares(current, reference.edges))
        drifted = p_value < rule.p_value and statistic >= rule.effect
        return _Verdict(statistic, p_value, drifted, statistics)

    def _categorical(self, reference: _Categorical, counts: Array, rule: _Rule) -> _Verdict | None:
        """Chi-square decides, with PSI as the effect size. None: too few rows."""
        total = counts.sum()
        if total < self.min_rows_:
            return None
        statistic, p_value, dof = chi_square(_padded(reference.counts, counts.size), counts)
        index = psi(_padded(reference.shares, counts.size), counts / total)
        statistics = {"chi2": statistic, "chi2_p_value": p_value, "chi2_dof": float(dof), "psi": index}
        drifted = p_value < rule.p_value and index >= rule.effect
        return _Verdict(statistic, p_value, drifted, statistics)


def _timeline(cut: TimeSlices, outcomes: dict[str, _Outcome]) -> list[WindowDrift]:
    """One `WindowDrift` per time slice from each feature's per-slice verdicts."""
    points = []
    for s, (low, high) in enumerate(pairwise(cut.bounds)):
        verdicts = {name: outcome.slices[s] for name, outcome in outcomes.items()}
        start, end = cut.span(s)
        points.append(
            WindowDrift(
                start=start,
                end=end,
                rows=int(high - low),
                statistics={name: v.statistic if v else None for name, v in verdicts.items()},
                drifted=[name for name, v in verdicts.items() if v and v.drifted],
            )
        )
    return points


def _missing_share(rows: int, present: int) -> float:
    return (rows - present) / rows if rows else 0.0


def _p_or_untested(drift: FeatureDrift) -> float:
    """Sort key: the p-value, untested features last."""
    return drift.p_value if drift.p_value is not None else 2.0


def _times(frame: pd.DataFrame) -> npt.NDArray[np.datetime64] | None:
    """The `time` column as naive UTC datetime64[ns] (NaT where unknown); None when absent."""
    if "time" not in frame:
        return None
    moments = pd.to_datetime(frame["time"], utc=True).dt.tz_localize(None)
    return np.asarray(moments.to_numpy(dtype="datetime64[ns]"))


def _log_version(frame: pd.DataFrame) -> int:
    """The newest model version in the log (0 when it records none)."""
    if "version" not in frame or frame["version"].isna().all():
        return 0
    return int(frame["version"].max())


def _numbers(column: pd.Series[Any]) -> Array:
    """A column as float64 with NaN for missing (and for anything not a number)."""
    return np.asarray(pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))


def _categorical_reference(summary: dict[str, Any]) -> _Categorical:
    frequencies: dict[str, float] = summary.get("frequencies") or {}
    shares = np.array(list(frequencies.values()), dtype=np.float64)
    return _Categorical(tuple(frequencies), np.round(shares * int(summary.get("count") or 0)), shares)


def _rule(config: MonitoringConfig, feature: str | None, reference: _Numeric | _Categorical) -> _Rule:
    thresholds = config.thresholds_for(feature)
    numeric = isinstance(reference, _Numeric)
    effect = thresholds.ks_statistic if numeric else thresholds.psi
    assert thresholds.p_value is not None and effect is not None  # thresholds_for sets every field
    return _Rule(thresholds.p_value, effect, "D" if numeric else "PSI")


def _category_bins(column: pd.Series[Any], known: tuple[str, ...]) -> tuple[npt.NDArray[np.intp], list[str]]:
    """Each row's category bin (-1: missing) and the bins' categories: `known` first, then the
    categories unseen in training, most frequent first."""
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    labels = [str(value) for value in uniques]
    positions = {category: i for i, category in enumerate(known)}
    unseen: dict[str, int] = {}
    for label, count in zip(labels, np.bincount(codes[codes >= 0], minlength=len(labels)), strict=True):
        if label not in positions:
            unseen[label] = unseen.get(label, 0) + int(count)
    for label, _ in sorted(unseen.items(), key=lambda item: (-item[1], item[0])):
        positions[label] = len(positions)
    lookup = np.array([positions[label] for label in labels] + [-1], dtype=np.intp)
    return lookup[codes], list(positions)


def _padded(values: Array, size: int) -> Array:
    """`values` followed by zeros up to `size` (the unseen categories' reference counts/shares)."""
    return np.concatenate([values, np.zeros(size - values.size)])


def _numeric_distribution(reference: _Numeric, current: Array) -> Distribution:
    """Shares on the reference's quantile bins, the outer edges at the finite min/max of both."""
    ends = [end for end in (_finite_ends(reference.values), _finite_ends(current)) if end]
    inner = [float(edge) for edge in reference.edges[1:-1]]
    low = min([end[0] for end in ends] + inner, default=0.0)
    edges = [low, *inner, max([end[1] for end in ends] + inner, default=low)]
    bins = [f"[{a:.4g}, {b:.4g})" for a, b in pairwise(edges)]
    bins[-1] = bins[-1][:-1] + "]"
    current_shares = sorted_shares(current, reference.edges)
    return Distribution(bins, [float(v) for v in reference.shares], [float(v) for v in current_shares], edges)


def _finite_ends(ordered: Array) -> tuple[float, float] | None:
    """The smallest and largest finite values of a sorted sample (None: there are none)."""
    low = int(np.searchsorted(ordered, -np.inf, side="right"))
    high = int(np.searchsorted(ordered, np.inf, side="left")) - 1
    return (float(ordered[low]), float(ordered[high])) if low <= high else None


def _categorical_distribution(reference: _Categorical, categories: list[str], counts: Array) -> Distribution:
    """Reference and current shares of every category (unseen ones last)."""
    shares = _padded(reference.shares, len(categories))
    return Distribution(
        list(categories), [float(v) for v in shares], [float(v) for v in counts / counts.sum()]
    )
