"""The drift report as one self-contained HTML file.

`render_html` turns a `DriftReport` into a page that opens without a network: inline CSS, plots
as inline SVG (matplotlib, see `_plots.py`), no scripts, links, fonts or images, and a content
security policy that forbids fetching anything. Every string from the data (feature names,
categories, notes) is escaped. The same report always renders to the same text.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable
from datetime import datetime
from html import escape
from pathlib import Path

from layerops.errors import LayeropsError
from layerops.monitoring import _plots
from layerops.monitoring.results import DriftReport, FeatureDrift, Performance

ESTIMATE_LABEL = "estimate (confidence-based, from predicted probabilities)"

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1200px;
color:#212529;padding:0 1rem}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #dee2e6;padding-bottom:.2rem}
.meta{color:#495057}.meta td{padding:.1rem 1rem .1rem 0}
.verdict{font-size:1.3rem;font-weight:700;padding:.5rem .8rem;border-radius:4px;display:inline-block}
.verdict.drift{background:#fde2e1;color:#a61b1b}.verdict.stable{background:#d8f3dc;color:#1b4332}
table.data{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
table.data th,table.data td{border:1px solid #dee2e6;padding:.25rem .5rem;text-align:left;vertical-align:top}
table.data th{background:#f1f3f5}table.data td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.drifted td{background:#fde2e1}tr.prediction td{border-top:2px solid #adb5bd}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.plot{margin:0;flex:0 1 420px}
.plot.missing{border:1px dashed #ced4da;padding:.5rem 1rem;color:#495057}
svg{max-width:100%;height:auto}.plot.wide{max-width:900px}
"""
_CSP = "default-src 'none'; style-src 'unsafe-inline'"


class ReportError(LayeropsError):
    """The HTML report cannot be written (the message names the path and the reason)."""


def render_html(report: DriftReport) -> str:
    """The report as a complete, self-contained HTML document (deterministic for the same input)."""
    title = f"Drift report: {report.model} v{report.version}"
    sections = [
        _header(report),
        _summary(report),
        _distributions(report),
        _timeline(report),
        _performance(report.performance),
        _notes(report.notes),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )


def write_html(report: DriftReport, path: Path) -> Path:
    """Render `report` and write it to `path` atomically (parent folders created); returns `path`.

    Raises `ReportError` (one line) when the file cannot be written.
    """
    text = render_html(report)
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as exc:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        reason = " ".join(str(exc.strerror or exc).split())
        raise ReportError(f"cannot write the drift report to {path}: {reason}") from exc
    return path


def _header(report: DriftReport) -> str:
    drifted = report.drifted_features()
    counted = f"{len(drifted)} of {len(report.features)} features drifted"
    if drifted:
        counted += ": " + ", ".join(escape(name) for name in drifted)
    if report.prediction is not None and report.prediction.drifted:
        counted += "; the predictions drifted"
    verdict = (
        '<span class="verdict drift">DRIFT DETECTED</span>'
        if report.drifted
        else '<span class="verdict stable">no drift</span>'
    )
    meta = [
        ("model", f"{report.model} v{report.version}"),
        ("task", report.task),
        ("window", report.window),
        ("from", _when(report.start)),
        ("to", _when(report.end)),
        ("rows", f"{report.rows:,}"),
    ]
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in meta)
    return (
        f"<header>\n<h1>Drift report: {escape(report.model)} v{report.version}</h1>\n"
        f'<table class="meta">{rows}</table>\n'
        f'<p>{verdict} <span class="count">{counted}</span></p>\n</header>'
    )


_COLUMNS = (
    "feature",
    "kind",
    "test",
    "statistic",
    "p-value",
    "threshold",
    "verdict",
    "psi",
    "wasserstein",
    "rows (reference / current)",
    "note",
)


def _summary(report: DriftReport) -> str:
    rows = [_summary_row(drift, "drifted" if drift.drifted else "") for drift in report.features]
    if report.prediction is not None:
        kind = "prediction drifted" if report.prediction.drifted else "prediction"
        rows.append(_summary_row(report.prediction, kind))
    head = "".join(f"<th>{escape(column)}</th>" for column in _COLUMNS)
    body = "\n".join(rows) if rows else f'<tr><td colspan="{len(_COLUMNS)}">no features</td></tr>'
    return (
        "<section>\n<h2>Summary</h2>\n"
        f'<table class="data summary"><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>\n'
        "</section>"
    )


def _summary_row(drift: FeatureDrift, css: str) -> str:
    cells = [
        _cell(drift.feature),
        _cell(drift.kind),
        _cell(drift.test),
        _cell(_num(drift.statistic), numeric=True),
        _cell(_num(drift.p_value), numeric=True),
        _cell(drift.threshold),
        _cell(_verdict(drift)),
        _cell(_num(drift.statistics.get("psi")), numeric=True),
        _cell(_num(drift.statistics.get("wasserstein")), numeric=True),
        _cell(f"{drift.reference_rows:,} / {drift.current_rows:,}", numeric=True),
        _cell(drift.note or ""),
    ]
    attribute = f' class="{css}"' if css else ""
    return f"<tr{attribute}>{''.join(cells)}</tr>"


def _distributions(report: DriftReport) -> str:
    plots = [_distribution(drift, f"f{index}") for index, drift in enumerate(report.features)]
    features = '<div class="plots">\n' + "\n".join(plots) + "\n</div>" if plots else "<p>No features.</p>"
    if report.prediction is None:
        prediction = "<p>No predictions were checked.</p>"
    else:
        prediction = f'<div class="plots">\n{_distribution(report.prediction, "pred")}\n</div>'
    return (
        "<section>\n<h2>Feature distributions: reference vs current</h2>\n"
        f"{features}\n</section>\n"
        f"<section>\n<h2>Prediction distribution</h2>\n{prediction}\n</section>"
    )


def _distribution(drift: FeatureDrift, key: str) -> str:
    name = escape(drift.feature)
    if drift.distribution is None:
        reason = escape(drift.note.rstrip(". ")) if drift.note else "no values to compare"
        return (
            f'<div class="plot missing" data-feature="{name}"><h3>{name}: {_verdict(drift)}</h3>'
            f"<p>No distribution to plot: {reason}.</p></div>"
        )
    svg = _plots.distribution_svg(drift, key)
    return f'<figure class="plot" data-feature="{name}">{svg}</figure>'


def _timeline(report: DriftReport) -> str:
    heading = "<section>\n<h2>Drift over time</h2>\n"
    if not report.timeline:
        return heading + "<p>The window was too short to split into time slices.</p>\n</section>"
    checked = [*report.features, *([report.prediction] if report.prediction is not None else [])]
    kinds = {drift.feature: drift.kind for drift in checked}
    drifted = {drift.feature for drift in checked if drift.drifted}
    svg = _plots.timeline_svg(report.timeline, kinds, drifted, "timeline")
    return (
        heading + f"<p>The deciding statistic of each feature per slice ({len(report.timeline)} slices, "
        "x = slice start); drifted features in bold lines.</p>\n"
        f'<figure class="plot wide">{svg}</figure>\n</section>'
    )


def _performance(performance: Performance | None) -> str:
    heading = "<section>\n<h2>Performance</h2>\n"
    if performance is None:
        return (
            heading + "<p>No feedback yet: no ground truth has been recorded for this window.</p>\n</section>"
        )
    rows = [
        ("metric", performance.metric),
        ("training-time test value", _num(performance.training)),
        (
            "observed over the window",
            f"{_num(performance.observed)} ({performance.labelled_rows:,} labelled rows)",
        ),
    ]
    if performance.estimated is not None:
        metric = performance.estimated_metric or performance.metric
        rows.append((f"{metric}, {ESTIMATE_LABEL}", _num(performance.estimated)))
    rows += [(f"{name} (labelled rows)", _num(value)) for name, value in sorted(performance.others.items())]
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    chart = ""
    if performance.timeline:
        svg = _plots.performance_svg(performance, "performance")
        chart = (
            "\n<p>Per slice: observed (labelled rows) and the estimate; the dotted line is the "
            f'training-time test value.</p>\n<figure class="plot wide">{svg}</figure>'
        )
    return heading + f'<table class="data performance">{table}</table>{chart}\n</section>'


def _notes(notes: Iterable[str]) -> str:
    items = "".join(f"<li>{escape(note)}</li>" for note in notes)
    body = f"<ul>{items}</ul>" if items else "<p>No notes.</p>"
    return f"<section>\n<h2>Notes</h2>\n{body}\n</section>"


def _cell(text: str, *, numeric: bool = False) -> str:
    return f'<td class="num">{escape(text)}</td>' if numeric else f"<td>{escape(text)}</td>"


def _verdict(drift: FeatureDrift) -> str:
    if drift.drifted:
        return "drift"
    return "not tested" if drift.statistic is None else "no drift"


def _num(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:.3g}"


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.isoformat(sep=" ", timespec="seconds")
