"""What the promotion gate found: both models side by side, the metric difference, each check."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Check:
    """One condition of the gate and how the challenger fared."""

    name: str
    """`metric`, `latency`, `size` or `onnx`."""
    passed: bool
    detail: str
    """One sentence with the numbers."""


@dataclass(frozen=True)
class ModelSide:
    """One of the two models as the gate saw it."""

    version: int | None
    candidate: str
    """The model family (`random_forest`...)."""
    metrics: dict[str, float]
    """Every metric of the task on the evaluation rows (empty when no rows were scored)."""
    p99_ms: float | None
    """Single-row p99 latency: timed at gate time side by side with the other model, else as
    training recorded it (None: neither)."""
    p50_ms: float | None
    """Single-row median latency, measured like `p99_ms`."""
    size_bytes: int
    """The bundle's files together."""
    onnx: str
    """`valid (max error …)`, or why there is no valid ONNX export."""
    onnx_valid: bool


@dataclass(frozen=True)
class GateReport:
    """The promotion gate's verdict on a challenger against the incumbent (None: no incumbent)."""

    name: str
    against: str
    """The alias whose version is the incumbent."""
    challenger: ModelSide
    incumbent: ModelSide | None
    metric: str
    """The primary metric: the challenger's selection metric."""
    higher_is_better: bool
    difference: float | None
    """Challenger − incumbent on all rows, oriented so that positive is better (None: no incumbent)."""
    ci_low: float | None
    ci_high: float | None
    confidence: float
    rounds: int
    """Bootstrap rounds the interval is made of."""
    margin: float | None
    """None: "not worse"; a number: the interval's lower bound must reach it (and exceed 0)."""
    rows: int
    source: str
    """Where the evaluation rows came from."""
    checks: list[Check] = field(default_factory=list)
    passed: bool = False
    forced: bool = False
    """Promoted although the gate refused (an operator's `--force` with a reason)."""

    @property
    def reasons(self) -> list[str]:
        """The details of the checks that failed."""
        return [check.detail for check in self.checks if not check.passed]

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON data (NaN as None), what the alias history and events keep."""
        data: dict[str, Any] = _finite(asdict(self))
        return data

    def summary(self) -> str:
        """One line: the metric difference with its interval, and the verdict."""
        verdict = "passed" if self.passed else "forced" if self.forced else "refused"
        if self.incumbent is None:
            return f"no current {self.against} version: {verdict}"
        if self.difference is None:
            return f"{self.metric} not compared: {verdict}"
        interval = (
            f" [{_signed(self.ci_low)}, {_signed(self.ci_high)}]"
            if self.ci_low is not None
            else " [undefined]"
        )
        return f"{self.metric} Δ {_signed(self.difference)}{interval}: {verdict}"

    def lines(self) -> list[str]:
        """The report as plain lines for a terminal."""
        title = f"v{self.challenger.version}" if self.challenger.version is not None else "the challenger"
        lines = [f"promotion gate: {self.name} {title} against {self.against}"]
        lines.append(f"  data: {self.source or 'none'} ({self.rows} rows)")
        sides = [("challenger", self.challenger)]
        if self.incumbent is not None:
            sides.append((self.against, self.incumbent))
        lines += _table(sides, self.metric)
        if self.incumbent is not None and self.difference is not None:
            low, high = self.ci_low, self.ci_high
            bounds = f"{_signed(low)} … {_signed(high)}" if low is not None else "undefined"
            better = "higher" if self.higher_is_better else "lower"
            lines.append(
                f"  {self.metric} difference ({better} is better, oriented): {_signed(self.difference)}, "
                f"{self.confidence:.0%} CI {bounds} ({self.rounds} rounds)"
            )
        lines.append("  checks:")
        lines += [f"    {'pass' if c.passed else 'FAIL'}  {c.name:<8} {c.detail}" for c in self.checks]
        verdict = (
            "PASSED" if self.passed else "REFUSED, promoted anyway (forced)" if self.forced else "REFUSED"
        )
        lines.append(f"  verdict: {verdict}")
        return lines


def _table(sides: list[tuple[str, ModelSide]], metric: str) -> list[str]:
    heads = [f"{role} v{side.version}" if side.version is not None else role for role, side in sides]
    names = sorted({m for _, side in sides for m in side.metrics}, key=lambda m: (m != metric, m))
    rows: list[tuple[str, list[str]]] = [("model", [side.candidate for _, side in sides])]
    rows += [
        (f"{m}{' *' if m == metric else ''}", [_number(s.metrics.get(m)) for _, s in sides]) for m in names
    ]
    rows.append(("p99 ms (single row)", [_number(side.p99_ms) for _, side in sides]))
    rows.append(("p50 ms (single row)", [_number(side.p50_ms) for _, side in sides]))
    rows.append(("bundle size", [_size(side.size_bytes) for _, side in sides]))
    rows.append(("onnx", [side.onnx for _, side in sides]))
    width = max(len(key) for key, _ in rows)
    cells = [max(len(heads[i]), *(len(values[i]) for _, values in rows)) for i in range(len(heads))]
    lines = ["  " + " " * width + "  " + "  ".join(h.ljust(cells[i]) for i, h in enumerate(heads))]
    for key, values in rows:
        lines.append(f"  {key:<{width}}  " + "  ".join(v.ljust(cells[i]) for i, v in enumerate(values)))
    return [line.rstrip() for line in lines]


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.4g}"


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.4g}"


def _size(size: int) -> str:
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
