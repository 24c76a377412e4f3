"""The canary comparison: the canary's recent outcomes against the baseline's (pure, numpy only).

`compare` gives one of three verdicts:
- `wait`: the canary **and** the baseline each have fewer than `min_requests` outcomes in the
  window (the baseline's rule matters at small shares only in the first seconds; at a 100 %
  step the baseline gets no traffic: pass its last window, `OutcomeWindow.latest`);
- `fail`: any check fails, each adding a one-sentence reason with its numbers:
  1. error rate: the canary's exceeds the baseline's by more than `max_error_rate_increase`
     **and** a one-sided two-proportion z-test (pooled) says the canary's is higher at p < 0.01,
     so a handful of unlucky requests on a small canary does not roll it back;
  2. latency: the canary's p99 exceeds the baseline's both by `max_p99_ratio` times and by
     `min_p99_increase_ms` (over succeeded requests: a failure's latency is its timeout);
  3. quality, when each side has `min_labelled` labelled rows: accuracy (f1_macro when asked)
     lower by more than `max_metric_drop` points, or rmse (mae when asked) higher by more than
     `max_metric_drop` relatively (their scale is the target's);
  4. predictions: the Jensen–Shannon distance (base 2, in [0, 1]) between the predicted class
     frequencies, or between the predicted values' histograms on the baseline's deciles,
     exceeds `max_prediction_distance`;
- `pass`: otherwise.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from layerops.releases.policy import Analysis

Verdict = Literal["pass", "fail", "wait"]
Number = float | int | None
P_VALUE = 0.01
"""The error-rate test's significance level (one-sided)."""
_ERROR_METRICS = frozenset({"rmse", "mae"})


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request a variant answered or failed, as the analysis sees it."""

    at: float
    """`time.monotonic()` seconds when it finished."""
    ok: bool
    """False: the server failed it (engine error, timeout); user input errors are not recorded."""
    seconds: float
    """Latency."""
    prediction: str | float | None
    """The first row's label (classification) or value (regression)."""
    request_id: str | None


class OutcomeWindow:
    """The last `max_seconds` (at most `max_items`) of one variant's outcomes; thread-safe.

    `add` is O(1) amortised (a deque; items older than `max_seconds` before the newest are
    dropped as new ones arrive). A variant that stops getting traffic keeps its last outcomes.
    """

    def __init__(self, max_seconds: float, max_items: int = 100_000) -> None:
        self.max_seconds = max_seconds
        self._items: deque[Outcome] = deque(maxlen=max_items)
        self._lock = threading.Lock()

    def add(self, outcome: Outcome) -> None:
        """Record one outcome (in time order)."""
        with self._lock:
            items = self._items
            items.append(outcome)
            oldest = outcome.at - self.max_seconds
            while items[0].at < oldest:
                items.popleft()

    def recent(self, now: float, seconds: float) -> list[Outcome]:
        """The outcomes of the last `seconds` before `now` (monotonic), oldest first."""
        return self._since(now - min(seconds, self.max_seconds))

    def latest(self, seconds: float) -> list[Outcome]:
        """The outcomes within `seconds` of the newest one, oldest first: the variant's last window
        of traffic however long ago (the baseline's at a 100 % canary step)."""
        with self._lock:
            newest = self._items[-1].at if self._items else 0.0
        return self._since(newest - min(seconds, self.max_seconds))

    def clear(self) -> None:
        """Forget every outcome (a new canary starts from nothing)."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def _since(self, start: float) -> list[Outcome]:
        with self._lock:
            picked: list[Outcome] = []
            for outcome in reversed(self._items):
                if outcome.at < start:
                    break
                picked.append(outcome)
        picked.reverse()
        return picked


@dataclass(frozen=True)
class Comparison:
    """A verdict on the canary, the reasons behind it and every number compared."""

    verdict: Verdict
    reasons: list[str]
    """One sentence per failed check (or why it waits, or a summary when it passes)."""
    numbers: dict[str, Number]
    metric: str | None = None
    """The quality metric compared on labelled rows (`<side>_metric` in `numbers`)."""
    checks: dict[str, bool] = field(default_factory=dict)
    """Check → whether it passed (`error_rate`, `p99`, `metric`, `distance`: the ones that ran)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: verdict, reasons, numbers, metric and checks."""
        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "numbers": dict(self.numbers),
            "metric": self.metric,
            "checks": dict(self.checks),
        }


def compare(
    baseline: Sequence[Outcome],
    canary: Sequence[Outcome],
    analysis: Analysis,
    *,
    labels: Mapping[str, object] | None = None,
    task: str = "classification",
    metric: str | None = None,
) -> Comparison:
    """The canary's outcomes against the baseline's under `analysis`'s thresholds (module doc).

    `labels`: request id → true label, for the quality check; `task`: `classification` or
    `regression`; `metric`: `f1_macro` / `mae` instead of the primary accuracy / rmse.
    """
    numbers: dict[str, Number] = {"baseline_requests": len(baseline), "canary_requests": len(canary)}
    short = [(side, len(o)) for side, o in (("canary", canary), ("baseline", baseline))]
    short = [(side, n) for side, n in short if n < analysis.min_requests]
    if short:
        reasons = [
            f"the {side} has {n} requests in the window, fewer than the {analysis.min_requests} needed"
            for side, n in short
        ]
        return Comparison("wait", reasons, numbers)
    classifier = task == "classification"
    name = metric or ("accuracy" if classifier else "rmse")
    failures: list[str] = []
    checks: dict[str, bool] = {}
    for check, problem in (
        ("error_rate", _error_rate(baseline, canary, analysis, numbers)),
        ("p99", _p99(baseline, canary, analysis, numbers)),
        ("metric", _metric(baseline, canary, analysis, numbers, labels, name)),
        ("distance", _distance(baseline, canary, analysis, numbers, classifier)),
    ):
        if problem is not None:
            checks[check] = problem == ""
            if problem:
                failures.append(problem)
    if failures:
        return Comparison("fail", failures, numbers, name, checks)
    summary = (
        f"the canary matches the baseline: error rate {_pct(numbers['canary_error_rate'])} against "
        f"{_pct(numbers['baseline_error_rate'])}, p99 {_ms(numbers.get('canary_p99_ms'))} against "
        f"{_ms(numbers.get('baseline_p99_ms'))}"
    )
    return Comparison("pass", [summary], numbers, name, checks)


def _error_rate(
    baseline: Sequence[Outcome], canary: Sequence[Outcome], analysis: Analysis, numbers: dict[str, Number]
) -> str:
    """'' when the check passes, else the reason."""
    n_b, n_c = len(baseline), len(canary)
    x_b = sum(1 for o in baseline if not o.ok)
    x_c = sum(1 for o in canary if not o.ok)
    rate_b, rate_c = x_b / n_b, x_c / n_c
    p_value = error_rate_p_value(x_b, n_b, x_c, n_c)
    numbers.update(baseline_error_rate=rate_b, canary_error_rate=rate_c, error_rate_p_value=p_value)
    if rate_c - rate_b > analysis.max_error_rate_increase and p_value < P_VALUE:
        return (
            f"the canary's error rate is {_pct(rate_c)} ({x_c} of {n_c}) against the baseline's "
            f"{_pct(rate_b)} ({x_b} of {n_b}), more than {_pct(analysis.max_error_rate_increase)} "
            f"higher (p = {p_value:.2g})"
        )
    return ""


def error_rate_p_value(errors_b: int, n_b: int, errors_c: int, n_c: int) -> float:
    """One-sided p-value of "the canary's error rate is higher" (pooled two-proportion z-test)."""
    pooled = (errors_b + errors_c) / (n_b + n_c)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_b + 1 / n_c))
    if spread == 0:
        return 1.0  # no error on either side, or nothing but errors: no difference
    z = (errors_c / n_c - errors_b / n_b) / spread
    return 0.5 * math.erfc(z / math.sqrt(2))


def _p99(
    baseline: Sequence[Outcome], canary: Sequence[Outcome], analysis: Analysis, numbers: dict[str, Number]
) -> str | None:
    p99_b = _p99_ms(baseline)
    p99_c = _p99_ms(canary)
    numbers.update(baseline_p99_ms=p99_b, canary_p99_ms=p99_c)
    if p99_b is None or p99_c is None:
        return None
    ratio = p99_c / p99_b if p99_b > 0 else math.inf
    if ratio > analysis.max_p99_ratio and p99_c - p99_b > analysis.min_p99_increase_ms:
        return (
            f"the canary's p99 latency is {_ms(p99_c)} against the baseline's {_ms(p99_b)}: "
            f"{ratio:.2f} times (more than {analysis.max_p99_ratio:g}) and "
            f"{p99_c - p99_b:.1f} ms slower (more than {analysis.min_p99_increase_ms:g} ms)"
        )
    return ""


def _p99_ms(outcomes: Sequence[Outcome]) -> float | None:
    seconds = [o.seconds for o in outcomes if o.ok]
    return float(np.percentile(seconds, 99)) * 1000 if seconds else None


def _metric(
    baseline: Sequence[Outcome],
    canary: Sequence[Outcome],
    analysis: Analysis,
    numbers: dict[str, Number],
    labels: Mapping[str, object] | None,
    name: str,
) -> str | None:
    b_value, b_count = metric_on_labels(baseline, labels or {}, name)
    c_value, c_count = metric_on_labels(canary, labels or {}, name)
    numbers.update(
        baseline_labelled=b_count, canary_labelled=c_count, baseline_metric=b_value, canary_metric=c_value
    )
    limit = analysis.max_metric_drop
    if limit is None or b_value is None or c_value is None or min(b_count, c_count) < analysis.min_labelled:
        return None
    if name in _ERROR_METRICS:
        drop = (c_value - b_value) / b_value if b_value > 0 else (math.inf if c_value > 0 else 0.0)
        worse = f"{_pct(drop)} higher (more than {_pct(limit)})"
    else:
        drop = b_value - c_value
        worse = f"{drop:.3f} lower (more than {limit:g})"
    numbers["metric_drop"] = drop
    if drop > limit:
        return (
            f"the canary's {name} on labelled rows is {c_value:.4g} ({c_count} rows) against the "
            f"baseline's {b_value:.4g} ({b_count} rows): {worse}"
        )
    return ""


def metric_on_labels(
    outcomes: Sequence[Outcome], labels: Mapping[str, object], name: str
) -> tuple[float | None, int]:
    """`name` (accuracy, f1_macro, rmse or mae) over the outcomes with a label, and their count."""
    pairs = [
        (o.prediction, labels[o.request_id])
        for o in outcomes
        if o.ok and o.prediction is not None and o.request_id is not None and o.request_id in labels
    ]
    if name in _ERROR_METRICS:
        numeric = [(p, t) for p, t in pairs if _is_number(p) and _is_number(t)]
        if not numeric:
            return None, 0
        errors = np.array([float(p) - float(t) for p, t in numeric])  # type: ignore[arg-type]
        value = math.sqrt(float(np.mean(errors**2))) if name == "rmse" else float(np.mean(np.abs(errors)))
        return value, len(numeric)
    if not pairs:
        return None, 0
    predicted = np.array([str(p) for p, _ in pairs])
    truth = np.array([str(t) for _, t in pairs])
    if name == "f1_macro":
        return _f1_macro(truth, predicted), len(pairs)
    return float(np.mean(predicted == truth)), len(pairs)


def _f1_macro(truth: npt.NDArray[np.str_], predicted: npt.NDArray[np.str_]) -> float:
    """The unweighted mean F1 over every class seen in either (as scikit-learn computes it)."""
    scores = []
    for label in np.union1d(truth, predicted):
        hits = float(np.sum((predicted == label) & (truth == label)))
        total = float(np.sum(predicted == label) + np.sum(truth == label))
        scores.append(2 * hits / total if total else 0.0)
    return float(np.mean(scores))


def _distance(
    baseline: Sequence[Outcome],
    canary: Sequence[Outcome],
    analysis: Analysis,
    numbers: dict[str, Number],
    classifier: bool,
) -> str | None:
    distance = prediction_distance(
        [o.prediction for o in baseline if o.ok],
        [o.prediction for o in canary if o.ok],
        classifier=classifier,
    )
    numbers["prediction_distance"] = distance
    limit = analysis.max_prediction_distance
    if distance is None or limit is None:
        return None
    if distance > limit:
        kind = "class frequencies" if classifier else "predicted values"
        return (
            f"the canary's {kind} differ from the baseline's: Jensen–Shannon distance "
            f"{distance:.3f} (more than {limit:g})"
        )
    return ""


def prediction_distance(
    baseline: Sequence[object], canary: Sequence[object], *, classifier: bool, bins: int = 10
) -> float | None:
    """Jensen–Shannon distance (base 2) between two samples of predictions: over the classes, or
    over a histogram on the baseline's quantiles (`bins` of them, and one bin each below and above
    its range). None when a side has none."""
    if classifier:
        b = [str(p) for p in baseline if p is not None]
        c = [str(p) for p in canary if p is not None]
        if not b or not c:
            return None
        classes = sorted(set(b) | set(c))
        index = {label: i for i, label in enumerate(classes)}
        p = np.bincount([index[x] for x in b], minlength=len(classes)).astype(float)
        q = np.bincount([index[x] for x in c], minlength=len(classes)).astype(float)
        return _js_distance(p, q)
    b_values = np.array([float(x) for x in baseline if _is_number(x)])  # type: ignore[arg-type]
    c_values = np.array([float(x) for x in canary if _is_number(x)])  # type: ignore[arg-type]
    b_values, c_values = b_values[np.isfinite(b_values)], c_values[np.isfinite(c_values)]
    if not len(b_values) or not len(c_values):
        return None
    edges = np.unique(np.quantile(b_values, np.linspace(0, 1, bins + 1)))
    p, q = _histogram(b_values, edges), _histogram(c_values, edges)
    return _js_distance(p, q)


def _histogram(values: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Counts over the bins between `edges` (the baseline's quantiles, min and max included), plus
    one bin below the minimum and one above the maximum: a canary outside the baseline's range
    lands where the baseline has nothing."""
    inner = edges[1:-1]
    index = 1 + np.searchsorted(inner, values, side="right")
    index[values < edges[0]] = 0
    index[values > edges[-1]] = len(inner) + 2
    return np.bincount(index, minlength=len(inner) + 3).astype(float)


def _js_distance(p: npt.NDArray[np.float64], q: npt.NDArray[np.float64]) -> float:
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: npt.NDArray[np.float64]) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool)


def _pct(value: Number) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def _ms(value: Number) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"
