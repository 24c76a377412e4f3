"""The drift report's figures: matplotlib figures rendered to inline SVG text.

Figures are built with `matplotlib.figure.Figure` directly and saved through matplotlib's SVG
canvas: no pyplot figure manager and no `rcParams` changes, so rendering keeps no global state
and is safe on a server's threads (`svg.hashsalt` is left alone for the same reason). The
SVG is trimmed for inlining: no XML prolog, DOCTYPE, metadata, comments or stylesheet, and its
ids are renamed from a caller-given key, so several figures can share one HTML page and the same
input always gives the same text.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from layerops.monitoring.results import FeatureDrift, Performance, WindowDrift

REFERENCE = "#4c72b0"
CURRENT = "#dd8452"
DRIFT = "#c0392b"
STABLE = "#2d6a4f"
MUTED = "#6c757d"
MAX_CATEGORIES = 25
"""Categories shown in one bar chart (the largest by either share); the x label says so."""

_SMALL = (4.2, 3.0)
_WIDE = (9.0, 3.2)
_LABEL_CHARS = 16
_PALETTE = [colormaps["tab20"](i) for i in [*range(0, 20, 2), *range(1, 20, 2)]]
"""Twenty distinct colours, the ten dark ones first."""
_TITLE_CHARS = 40

_PROLOG = re.compile(r"\A.*?(?=<svg\b)", re.DOTALL)
_STRIP = re.compile(r"<metadata>.*?</metadata>|<!--.*?-->|<style\b[^>]*>.*?</style>", re.DOTALL)
_EMPTY_DEFS = re.compile(r"<defs>\s*</defs>")
_ID = re.compile(r' id="([^"]+)"')
_REF = re.compile(r'(url\(#|href="#)([^")]+)')


def distribution_svg(drift: FeatureDrift, key: str) -> str:
    """The reference vs current shares of one feature (or the predictions), as inline SVG.

    Numeric: the shares per reference-quantile bin as two step lines, the x axis labelled with
    the bin edges. Categorical: grouped bars per category. Requires `drift.distribution`.
    """
    distribution = drift.distribution
    if distribution is None:
        raise ValueError(f"{drift.feature!r} has no distribution to plot")
    fig = Figure(figsize=_SMALL)
    ax = fig.add_subplot()
    if drift.kind == "numeric":
        bottom = _steps(
            ax, distribution.bins, distribution.reference, distribution.current, distribution.edges
        )
    else:
        bottom = _bars(ax, distribution.bins, distribution.reference, distribution.current)
    # Fixed margins, not a layout engine: constrained layout doubles the drawing time.
    fig.subplots_adjust(left=0.14, right=0.97, top=0.8, bottom=bottom)
    verdict, colour = _verdict(drift)
    ax.set_title(
        _plain(f"{_clip(drift.feature, _TITLE_CHARS)} — {verdict}"), color=colour, fontsize=9, pad=16
    )
    ax.set_ylabel("share of rows", fontsize=8)
    ax.yaxis.set_major_locator(MaxNLocator(4))  # fewer tick labels: text layout is most of the cost
    ax.tick_params(labelsize=7)
    ax.legend(
        loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2, fontsize=7, frameon=False, borderaxespad=0.2
    )
    return to_svg(fig, key)


def timeline_svg(
    timeline: Sequence[WindowDrift], kinds: Mapping[str, str], drifted: set[str], key: str
) -> str:
    """Each feature's deciding statistic per time slice, one axis per test, drifted ones bold."""
    names = sorted({name for window in timeline for name in window.statistics})
    groups = [
        ("KS statistic D (numeric)", [n for n in names if kinds.get(n, "numeric") == "numeric"]),
        ("χ² statistic (categorical)", [n for n in names if kinds.get(n) == "categorical"]),
    ]
    groups = [(label, members) for label, members in groups if members]
    fig = Figure(figsize=(_WIDE[0], _WIDE[1] * max(len(groups), 1)))
    columns = 2 if max((len(members) for _, members in groups), default=0) > 12 else 1
    _wide_margins(fig, legend_columns=columns)
    starts = _days([window.start for window in timeline])
    for index, (label, members) in enumerate(groups):
        ax = fig.add_subplot(len(groups), 1, index + 1)
        for number, name in enumerate(sorted(members, key=lambda n: n not in drifted)):
            values = [_nan(window.statistics.get(name)) for window in timeline]
            _series(
                ax, starts, values, name, colour=_PALETTE[number % len(_PALETTE)], emphasised=name in drifted
            )
        ax.set_ylabel(label, fontsize=8)
        _time_axis(ax, timeline[0].start, timeline[-1].end)
        _outside_legend(ax, columns)
    if not groups:
        fig.add_subplot().set_title("no statistics in any slice", fontsize=9)
    return to_svg(fig, key)


def performance_svg(performance: Performance, key: str) -> str:
    """Observed and estimated quality per time slice, with the training-time value as reference."""
    fig = Figure(figsize=_WIDE)
    _wide_margins(fig, legend_columns=1)
    ax = fig.add_subplot()
    starts = _days([point.start for point in performance.timeline])
    observed = [_nan(point.observed) for point in performance.timeline]
    estimated = [_nan(point.estimated) for point in performance.timeline]
    ax.plot(
        starts, observed, color=REFERENCE, marker="o", lw=2, label=_plain(f"observed {performance.metric}")
    )
    if any(not math.isnan(value) for value in estimated):
        metric = performance.estimated_metric or performance.metric
        ax.plot(
            starts, estimated, color=CURRENT, marker="s", lw=1.5, ls="--", label=_plain(f"estimated {metric}")
        )
    if performance.training is not None:
        ax.axhline(performance.training, color=MUTED, lw=1, ls=":", label="training (test set)")
    ax.set_ylabel(_plain(performance.metric), fontsize=8)
    if performance.timeline:
        _time_axis(ax, performance.timeline[0].start, performance.timeline[-1].end)
    _outside_legend(ax, 1)
    return to_svg(fig, key)


def to_svg(fig: Figure, key: str) -> str:
    """The figure as SVG text for inlining, its ids prefixed with `key` (deterministic)."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    svg = _EMPTY_DEFS.sub("", _STRIP.sub("", _PROLOG.sub("", buffer.getvalue())))
    referenced = {match[2] for match in _REF.finditer(svg)}
    names: dict[str, str] = {}

    def rename(name: str) -> str:
        return names.setdefault(name, f"{key}-{len(names)}")

    svg = _ID.sub(lambda m: f' id="{rename(m[1])}"' if m[1] in referenced else "", svg)
    return _REF.sub(lambda m: m[1] + rename(m[2]), svg).strip()


def _steps(
    ax: Axes,
    bins: Sequence[str],
    reference: Sequence[float],
    current: Sequence[float],
    edges: Sequence[float],
) -> float:
    """Two step lines over the bins; returns the bottom margin the tick labels need."""
    positions = list(range(len(bins) + 1))
    ax.stairs(reference, positions, color=REFERENCE, lw=1.5, label="reference")
    ax.stairs(current, positions, color=CURRENT, lw=1.5, label="current")
    if len(edges) == len(bins) + 1:
        step = max(1, math.ceil(len(edges) / 7))
        ticks = positions[::step]
        ax.set_xticks(ticks, [_plain(f"{edges[i]:.3g}") for i in ticks], rotation=30, ha="right")
        ax.set_xlabel("bin edges (reference quantiles)", fontsize=8)
        return 0.27
    else:
        step = max(1, math.ceil(len(bins) / 7))
        centres = [i + 0.5 for i in range(len(bins))][::step]
        ax.set_xticks(
            centres, [_plain(_clip(b, _LABEL_CHARS)) for b in bins][::step], rotation=30, ha="right"
        )
        return 0.3


def _bars(ax: Axes, bins: Sequence[str], reference: Sequence[float], current: Sequence[float]) -> float:
    """Grouped bars per category; returns the bottom margin the tick labels need."""
    order = list(range(len(bins)))
    if len(order) > MAX_CATEGORIES:
        order = sorted(order, key=lambda i: -max(reference[i], current[i]))[:MAX_CATEGORIES]
        order.sort()
        ax.set_xlabel(f"the {MAX_CATEGORIES} largest of {len(bins)} categories", fontsize=8)
    xs = list(range(len(order)))
    ax.bar([x - 0.2 for x in xs], [reference[i] for i in order], 0.4, color=REFERENCE, label="reference")
    ax.bar([x + 0.2 for x in xs], [current[i] for i in order], 0.4, color=CURRENT, label="current")
    labels = [_plain(_clip(bins[i], _LABEL_CHARS - 2)) for i in order]
    if len(xs) > 4:
        ax.set_xticks(xs, labels, rotation=45, ha="right", rotation_mode="anchor")
        return 0.4
    ax.set_xticks(xs, labels)
    return 0.2 if len(order) == len(bins) else 0.25


def _series(
    ax: Axes, x: Sequence[float], y: Sequence[float], name: str, *, colour: Any, emphasised: bool
) -> None:
    label = _plain(_clip(name, _LABEL_CHARS * 2)) + (" (drifted)" if emphasised else "")
    if emphasised:
        ax.plot(x, y, color=colour, lw=2.4, marker="o", ms=4, zorder=3, label=label)
    else:
        ax.plot(x, y, color=colour, lw=1, alpha=0.75, marker=".", ms=3, label=label)


def _days(moments: Sequence[datetime]) -> list[float]:
    """Matplotlib's date numbers (days; aware datetimes in UTC), for its date locator/formatter."""
    return [float(day) for day in date2num(moments)]  # type: ignore[no-untyped-call]


def _time_axis(ax: Axes, first: datetime, last: datetime) -> None:
    start, end = _days([first, last])
    if end > start:  # an explicit range: a single slice would leave the date locator nothing to span
        ax.set_xlim(start, end)
    locator = AutoDateLocator(maxticks=8)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def _wide_margins(fig: Figure, *, legend_columns: int) -> None:
    """Fixed margins in inches (a layout engine would double the drawing time); legend on the right."""
    width, height = fig.get_size_inches()
    right = 1 - (1.5 * legend_columns + 0.1) / width
    fig.subplots_adjust(left=0.7 / width, right=right, top=1 - 0.2 / height, bottom=0.5 / height, hspace=0.3)


def _outside_legend(ax: Axes, columns: int) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), ncols=columns, fontsize=7, frameon=False)


def _verdict(drift: FeatureDrift) -> tuple[str, str]:
    if drift.drifted:
        return "drifted", DRIFT
    if drift.statistic is None:
        return "not tested", MUTED
    return "no drift", STABLE


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(text: str) -> str:
    """Text shown as written: a `$` would otherwise start matplotlib's mathtext."""
    return text.replace("$", r"\$")
