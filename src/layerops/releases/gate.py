"""The promotion gate: may a challenger version replace the incumbent?

Both models are scored with their native fitted pipelines on the same rows (a file the operator
names, else the challenger's held-out test sample). The primary metric is the challenger's
selection metric; a paired bootstrap (`releases.bootstrap`) gives the interval of the difference,
oriented so that positive means the challenger is better:

- `margin=None` ("not worse", the default): refused only when the interval lies wholly below
  zero, i.e. the challenger is significantly worse;
- `margin=m` (m ≥ 0, "wins by at least m"): passes only when the interval's lower bound reaches
  m and lies above zero; `margin=0` is the strict gate "significantly better".

Then the costs: single-row p99 latency, both models timed side by side now (`latency_calls`
interleaved native calls; 0: what training recorded) (refused when more than
`max_latency_ratio` times the incumbent's *and* `min_latency_increase_ms` slower *and* the median
is over the ratio too — a stall of the machine lifts the p99 of 30 timed calls, a slower model
lifts every call — or above `max_latency_ms`), bundle size (`max_size_ratio`,
`max_size_bytes`), and ONNX parity: with `require_onnx_parity`, a challenger without a valid ONNX
export (converted, error within its tolerance) is refused when the incumbent has one, because
serving would silently move from ONNX Runtime to the slower native engine. When neither has
one, nothing changes and it passes.

With no incumbent (the alias is unset) the gate passes: "no current production version".
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from layerops.bundle import BundleMetadata, ModelBundle
from layerops.errors import LayeropsError
from layerops.releases import _scoring
from layerops.releases._report import Check, GateReport, ModelSide
from layerops.releases.bootstrap import (
    CLASSIFICATION_METRICS,
    LOWER_IS_BETTER,
    REGRESSION_METRICS,
    Interval,
    Outputs,
    full_value,
    paired,
)
from layerops.releases.latency import paired_single_row_latency

__all__ = ["Check", "Contender", "GatePolicy", "GateReport", "ModelSide", "evaluate", "primary_metric"]

LATENCY_KEY = "single_row_p99_ms"
"""The latency training records in `metadata.latency` (`training.evaluation.measure_latency`)."""
MEDIAN_KEY = "single_row_p50_ms"


@dataclass(frozen=True)
class GatePolicy:
    """What a challenger must show to be promoted (see the module docstring)."""

    margin: float | None = None
    confidence: float = 0.95
    resamples: int = 1000
    seed: int = 0
    max_latency_ratio: float = 1.5
    max_latency_ms: float | None = None
    min_latency_increase_ms: float = 5.0
    """A p99 more than `max_latency_ratio` times the incumbent's fails only when it is also this
    many ms slower: training measures p99 over 30 single-row calls, on whatever else the machine
    was doing, and millisecond timings vary by more than 1.5× from one run to the next."""
    max_size_ratio: float = 3.0
    max_size_bytes: int | None = None
    require_onnx_parity: bool = True
    latency_calls: int = 200
    """Single-row calls of each model timed side by side at gate time (`releases.latency`);
    0 compares the latencies training recorded instead."""

    def __post_init__(self) -> None:
        problems = [
            "margin must be ≥ 0" if self.margin is not None and not self.margin >= 0 else "",
            "confidence must be between 0 and 1" if not 0 < self.confidence < 1 else "",
            "resamples must be at least 100" if self.resamples < 100 else "",
            "max_latency_ratio must be > 0" if not self.max_latency_ratio > 0 else "",
            "max_size_ratio must be > 0" if not self.max_size_ratio > 0 else "",
        ]
        problem = next((p for p in problems if p), "")
        if problem:
            raise LayeropsError(f"gate policy: {problem}")


@dataclass(frozen=True)
class Contender:
    """A registered version (None: not registered) and its bundle, loaded with the native model."""

    version: int | None
    bundle: ModelBundle


def primary_metric(metadata: BundleMetadata) -> str:
    """The model's selection metric (its spec's `selection.metric`; default f1_macro / rmse)."""
    selection = metadata.lineage.spec.get("selection") if metadata.lineage.spec else None
    metric = selection.get("metric") if isinstance(selection, dict) else None
    known = CLASSIFICATION_METRICS if metadata.task == "classification" else REGRESSION_METRICS
    if isinstance(metric, str) and metric in known:
        return metric
    return "f1_macro" if metadata.task == "classification" else "rmse"


def evaluate(
    challenger: Contender,
    incumbent: Contender | None,
    data: pd.DataFrame | None,
    policy: GatePolicy | None = None,
    *,
    against: str = "production",
    source: str = "",
) -> GateReport:
    """Score both on `data` (raw feature columns and the target) and apply `policy`'s checks.

    `data` may be None only without an incumbent. Raises `DataError` for evaluation data the
    models cannot take (no target column, a required feature missing) and `LayeropsError` for
    models that cannot be compared (different tasks or targets).
    """
    policy = policy or GatePolicy()
    metadata = challenger.bundle.metadata
    metric = primary_metric(metadata)
    if incumbent is None:
        scored = _score([challenger], data) if data is not None else None
        side = _side(challenger, scored[1][0] if scored is not None else {})
        check = Check("incumbent", True, f"no current {against} version: nothing to compare with")
        rows = len(scored[0]) if scored is not None else 0
        return GateReport(
            metadata.name, against, side, None, metric, metric not in LOWER_IS_BETTER,
            None, None, None, policy.confidence, 0, policy.margin, rows, source, [check], passed=True,
        )  # fmt: skip
    _comparable(challenger, incumbent)
    if data is None:
        raise LayeropsError("the promotion gate needs evaluation data to compare the two versions")
    frame, metrics, outputs = _score([challenger, incumbent], data)
    higher = metric not in LOWER_IS_BETTER
    interval = paired(
        metric, outputs[0], outputs[1],
        higher_is_better=higher, resamples=policy.resamples, confidence=policy.confidence, seed=policy.seed,
    )  # fmt: skip
    measured: list[tuple[float, float] | None] = [None, None]
    if (
        policy.latency_calls > 0
        and challenger.bundle.model is not None
        and incumbent.bundle.model is not None
    ):
        measured = list(
            paired_single_row_latency(
                [challenger.bundle, incumbent.bundle], frame, calls=policy.latency_calls
            )
        )
    new, old = _side(challenger, metrics[0], measured[0]), _side(incumbent, metrics[1], measured[1])
    checks = [
        _metric_check(metric, interval, policy),
        _latency_check(new, old, policy),
        _size_check(new, old, policy),
        _onnx_check(new, old, policy),
    ]
    return GateReport(
        metadata.name, against, new, old, metric, higher, interval.difference, interval.low, interval.high,
        policy.confidence, interval.rounds, policy.margin, len(frame), source, checks,
        passed=all(check.passed for check in checks),
    )  # fmt: skip


def _comparable(challenger: Contender, incumbent: Contender) -> None:
    new, old = challenger.bundle.metadata, incumbent.bundle.metadata
    if new.task != old.task:
        raise LayeropsError(
            f"cannot compare v{challenger.version} ({new.task}) with v{incumbent.version} ({old.task})"
        )
    if new.target != old.target:
        raise LayeropsError(
            f"cannot compare v{challenger.version} with v{incumbent.version}: they predict "
            f"{new.target!r} and {old.target!r}"
        )


def _score(
    contenders: list[Contender], data: pd.DataFrame
) -> tuple[pd.DataFrame, list[dict[str, float]], list[Outputs]]:
    """The rows with a target, every metric of each contender on them, and their outputs."""
    first = contenders[0].bundle.metadata
    frame = _scoring.usable_rows(data, first)
    bundles = [c.bundle for c in contenders]
    labels = _scoring.shared_labels(frame, bundles) if first.task == "classification" else None
    outputs = [_scoring.outputs(c.bundle, frame, labels, _who(c)) for c in contenders]
    names = CLASSIFICATION_METRICS if labels is not None else REGRESSION_METRICS
    metrics = [{m: full_value(m, out) for m in names} for out in outputs]
    return frame, metrics, outputs


def _who(contender: Contender) -> str:
    name = contender.bundle.metadata.name
    return f"{name} v{contender.version}" if contender.version is not None else name


def _side(
    contender: Contender, metrics: dict[str, float], measured: tuple[float, float] | None = None
) -> ModelSide:
    metadata = contender.bundle.metadata
    onnx = metadata.onnx
    error = onnx.max_abs_error
    valid = bool(onnx.converted and contender.bundle.onnx_model is not None)
    valid = valid and (error is None or error <= onnx.tolerance)
    if valid:
        state = f"valid (max error {error:.1e})" if error is not None else "valid"
    elif onnx.converted:
        state = f"rejected: max error {error:.1e} > tolerance {onnx.tolerance:.0e}"
    else:
        state = f"none ({onnx.reason or 'not converted'})"
    latency = metadata.latency
    p50, p99 = measured if measured is not None else (latency.get(MEDIAN_KEY), latency.get(LATENCY_KEY))
    return ModelSide(
        contender.version, metadata.candidate, metrics, p99, p50,
        bundle_size(contender.bundle), state, valid,
    )  # fmt: skip


def bundle_size(bundle: ModelBundle) -> int:
    """The bytes of the bundle's files (estimated from its parts when it was built in memory)."""
    if bundle.file_bytes:
        return sum(bundle.file_bytes.values())
    import skops.io  # scikit-learn: only for a bundle that never was a folder

    size = len(bundle.metadata.model_dump_json()) + len(bundle.onnx_model or b"")
    return size + (len(skops.io.dumps(bundle.model)) if bundle.model is not None else 0)


def _metric_check(metric: str, interval: Interval, policy: GatePolicy) -> Check:
    where = f"{metric} Δ {interval.difference:+.4g}"
    if interval.low is None or interval.high is None:
        return Check("metric", False, f"{where}: undefined on too many resamples ({interval.rounds} usable)")
    ci = f"{where}, {policy.confidence:.0%} CI [{interval.low:+.4g}, {interval.high:+.4g}]"
    if policy.margin is None:
        if interval.high < 0:
            return Check("metric", False, f"{ci}: significantly worse than the incumbent")
        return Check("metric", True, f"{ci}: not significantly worse")
    margin = policy.margin
    if interval.low >= margin and interval.low > 0:
        won = "significantly better" if margin == 0 else f"better by at least {margin:g}"
        return Check("metric", True, f"{ci}: {won}")
    if margin == 0:
        return Check("metric", False, f"{ci}: not significantly better (the lower bound is not above 0)")
    return Check("metric", False, f"{ci}: needs a lower bound ≥ {margin:g} to be better by the margin")


def _latency_check(new: ModelSide, old: ModelSide, policy: GatePolicy) -> Check:
    if new.p99_ms is None:
        return Check("latency", True, "no single-row latency recorded for the challenger: not checked")
    if policy.max_latency_ms is not None and new.p99_ms > policy.max_latency_ms:
        return Check(
            "latency", False, f"p99 {new.p99_ms:.3g} ms exceeds the {policy.max_latency_ms:g} ms limit"
        )
    if old.p99_ms is None or old.p99_ms <= 0:
        return Check("latency", True, f"p99 {new.p99_ms:.3g} ms (the incumbent recorded none)")
    ratio = new.p99_ms / old.p99_ms
    text = f"p99 {new.p99_ms:.3g} ms vs {old.p99_ms:.3g} ms ({ratio:.2f}×)"
    slower = new.p99_ms - old.p99_ms
    if ratio <= policy.max_latency_ratio:
        return Check("latency", True, f"{text}: within {policy.max_latency_ratio:g}×")
    if slower <= policy.min_latency_increase_ms:
        return Check("latency", True, f"{text}: only {slower:.3g} ms slower")
    # A slower model is slower on every call; a stall of a busy machine lifts only the tail.
    if new.p50_ms is not None and old.p50_ms and new.p50_ms <= policy.max_latency_ratio * old.p50_ms:
        median = f"median {new.p50_ms:.3g} ms vs {old.p50_ms:.3g} ms"
        return Check(
            "latency", True, f"{text}, but {median} is within {policy.max_latency_ratio:g}×: a stall"
        )
    return Check("latency", False, f"{text}: above {policy.max_latency_ratio:g}× and {slower:.3g} ms slower")


def _size_check(new: ModelSide, old: ModelSide, policy: GatePolicy) -> Check:
    text = f"bundle {new.size_bytes:,} bytes vs {old.size_bytes:,}"
    if policy.max_size_bytes is not None and new.size_bytes > policy.max_size_bytes:
        return Check("size", False, f"{text}: above the {policy.max_size_bytes:,}-byte limit")
    ratio = new.size_bytes / old.size_bytes if old.size_bytes else 1.0
    if ratio > policy.max_size_ratio:
        return Check("size", False, f"{text} ({ratio:.2f}×): above {policy.max_size_ratio:g}×")
    return Check("size", True, f"{text} ({ratio:.2f}×): within {policy.max_size_ratio:g}×")


def _onnx_check(new: ModelSide, old: ModelSide, policy: GatePolicy) -> Check:
    if not policy.require_onnx_parity:
        return Check("onnx", True, f"not required (challenger: {new.onnx})")
    if new.onnx_valid:
        return Check("onnx", True, f"challenger export {new.onnx}")
    if old.onnx_valid:
        return Check(
            "onnx", False,
            f"the incumbent serves on ONNX but the challenger has no valid export ({new.onnx}): "
            "serving would fall back to the slower native engine",
        )  # fmt: skip
    return Check("onnx", True, f"neither has a valid ONNX export: both serve natively ({new.onnx})")
