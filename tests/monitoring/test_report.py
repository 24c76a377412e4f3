"""The HTML drift report: self-contained, escaped, one plot per feature, fallbacks when data is absent."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from layerops.errors import LayeropsError
from layerops.monitoring.report import ESTIMATE_LABEL, ReportError, render_html, write_html
from layerops.monitoring.results import (
    Distribution,
    DriftReport,
    FeatureDrift,
    Performance,
    PerformancePoint,
    WindowDrift,
)

HOSTILE = "<b>x&y</b>"
START = datetime(2025, 3, 1, tzinfo=UTC)


def numeric(name: str, *, drifted: bool, shift: float = 0.0) -> FeatureDrift:
    edges = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    current = [0.2 - shift, 0.2 - shift, 0.2, 0.2 + shift, 0.2 + shift]
    return FeatureDrift(
        feature=name,
        kind="numeric",
        test="ks",
        statistic=0.31 if drifted else 0.02,
        p_value=1e-9 if drifted else 0.8,
        threshold="p < 0.01 and D >= 0.1",
        drifted=drifted,
        reference_rows=1000,
        current_rows=500,
        statistics={"ks": 0.31, "ks_p_value": 1e-9, "wasserstein": 0.42, "psi": 0.37, "missing_share": 0.0},
        distribution=Distribution(
            bins=[f"[{a:g}, {b:g})" for a, b in pairwise(edges)],
            reference=[0.2] * 5,
            current=current,
            edges=edges,
        ),
    )


def categorical(name: str) -> FeatureDrift:
    return FeatureDrift(
        feature=name,
        kind="categorical",
        test="chi2",
        statistic=1.4,
        p_value=0.5,
        threshold="p < 0.01",
        drifted=False,
        reference_rows=1000,
        current_rows=500,
        statistics={"chi2": 1.4, "chi2_p_value": 0.5, "psi": 0.01},
        distribution=Distribution(
            bins=["north", "south", "<east>"], reference=[0.5, 0.3, 0.2], current=[0.48, 0.32, 0.2]
        ),
    )


def untested(name: str) -> FeatureDrift:
    return FeatureDrift(
        feature=name,
        kind="numeric",
        test="ks",
        statistic=None,
        p_value=None,
        threshold="p < 0.01 and D >= 0.1",
        drifted=False,
        reference_rows=1000,
        current_rows=3,
        note="too few rows (3 < 30).",
    )


def timeline(names: list[str], slices: int) -> list[WindowDrift]:
    return [
        WindowDrift(
            start=START + timedelta(hours=i),
            end=START + timedelta(hours=i + 1),
            rows=100,
            statistics={
                name: (None if i == 0 and n == 0 else 0.05 * (i + n)) for n, name in enumerate(names)
            },
            drifted=[names[0]] if i > 2 else [],
        )
        for i in range(slices)
    ]


def performance() -> Performance:
    return Performance(
        metric="f1_macro",
        training=0.91,
        observed=0.84,
        labelled_rows=120,
        estimated=0.88,
        estimated_metric="accuracy",
        others={"accuracy": 0.86},
        timeline=[
            PerformancePoint(START + timedelta(hours=i), START + timedelta(hours=i + 1), 100, 24, 0.8, 0.88)
            for i in range(5)
        ],
    )


def full_report() -> DriftReport:
    features = [numeric("age", drifted=True, shift=0.1), categorical("city"), numeric(HOSTILE, drifted=False)]
    features.append(untested("rare"))
    prediction = FeatureDrift(
        feature="prediction",
        kind="categorical",
        test="chi2",
        statistic=2.0,
        p_value=0.3,
        threshold="p < 0.01",
        drifted=False,
        reference_rows=1000,
        current_rows=500,
        distribution=Distribution(bins=["setosa", "virginica"], reference=[0.5, 0.5], current=[0.4, 0.6]),
    )
    return DriftReport(
        model="iris",
        version=3,
        task="classification",
        window="the last 7 days",
        start=START,
        end=START + timedelta(days=7),
        rows=500,
        features=features,
        prediction=prediction,
        timeline=timeline(["age", "city", HOSTILE, "prediction"], 5),
        performance=performance(),
        notes=["feedback covers 24% of rows", "a note with <angle> & ampersand"],
    )


def bare_report() -> DriftReport:
    return DriftReport(
        model="iris",
        version=1,
        task="classification",
        window="the last hour",
        start=None,
        end=None,
        rows=40,
        features=[categorical("city")],
        prediction=None,
    )


@pytest.fixture(scope="module")
def page() -> str:
    """The full report rendered once (rendering takes a fraction of a second)."""
    return render_html(full_report())


def test_writes_one_plot_per_feature_with_distribution_plus_prediction_timeline_and_performance(
    tmp_path: Path,
) -> None:
    path = write_html(full_report(), tmp_path / "report.html")

    html = path.read_text(encoding="utf-8")
    # 3 features with a distribution + prediction + drift over time + performance; "rare" has none
    assert html.count("<svg") == 3 + 1 + 1 + 1
    assert re.search(r'<div class="plot missing" data-feature="rare">.*too few rows \(3 &lt; 30\)', html)
    for name in ("age", "city", "&lt;b&gt;x&amp;y&lt;/b&gt;", "prediction"):
        assert re.search(rf'<figure class="plot" data-feature="{re.escape(name)}"><svg\b', html)


def test_header_gives_the_verdict_and_the_drifted_names(page: str) -> None:
    html = page

    header = html[html.index("<header>") : html.index("</header>")]
    assert "DRIFT DETECTED" in header
    assert "1 of 4 features drifted: age" in header
    assert "the last 7 days" in header
    assert "2025-03-01 00:00:00+00:00" in header and "2025-03-08 00:00:00+00:00" in header


def test_summary_lists_features_in_order_then_the_prediction_and_highlights_drift(page: str) -> None:
    html = page

    summary = html[html.index("<h2>Summary</h2>") : html.index("</table>", html.index("<h2>Summary</h2>"))]
    rows = re.findall(r"<tr( class=\"[^\"]*\")?><td>([^<]*)</td>", summary)
    assert [name for _, name in rows] == ["age", "city", "&lt;b&gt;x&amp;y&lt;/b&gt;", "rare", "prediction"]
    assert rows[0][0] == ' class="drifted"' and rows[1][0] == ""
    assert "<td>drift</td>" in summary and "<td>not tested</td>" in summary
    assert '<td class="num">0.37</td>' in summary  # psi
    assert '<td class="num">0.42</td>' in summary  # wasserstein


def test_needs_no_network(page: str) -> None:
    html = page

    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    for match in re.finditer(r"\b(?:xlink:)?(?:src|href)\s*=\s*\"([^\"]*)\"", html):
        assert match[1].startswith("#"), match[0]
    assert "<script" not in html and "<link" not in html and "<img" not in html and "@import" not in html
    assert "default-src 'none'" in html


def test_escapes_every_user_string(page: str) -> None:
    html = page

    assert HOSTILE not in html and "<b>" not in html
    assert "&lt;b&gt;x&amp;y&lt;/b&gt;" in html
    assert "<angle>" not in html and "a note with &lt;angle&gt; &amp; ampersand" in html
    assert "<east>" not in html


def test_performance_labels_the_estimate_and_charts_the_slices(page: str) -> None:
    html = page

    section = html[html.index("<h2>Performance</h2>") :]
    assert ESTIMATE_LABEL == "estimate (confidence-based, from predicted probabilities)"
    assert f"<th>accuracy, {ESTIMATE_LABEL}</th><td>0.88</td>" in section
    assert "<td>0.91</td>" in section and "0.84 (120 labelled rows)" in section
    assert "<svg" in section[: section.index("<h2>Notes</h2>")]


def test_without_timeline_or_performance_it_says_so() -> None:
    html = render_html(bare_report())

    assert "The window was too short to split into time slices." in html
    assert "No feedback yet" in html
    assert "No predictions were checked." in html and "No notes." in html
    assert "no drift" in html and "DRIFT DETECTED" not in html
    assert html.count("<svg") == 1


def test_rendering_is_deterministic_and_ids_do_not_collide(page: str) -> None:
    first = render_html(full_report())

    assert first == page
    ids = re.findall(r'\sid="([^"]+)"', first)
    assert ids and len(ids) == len(set(ids))
    for target in re.findall(r'(?:url\(#|href="#)([^")]+)', first):
        assert target in ids


def test_threads_render_the_same_page(page: str) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        pages = list(pool.map(lambda _: render_html(full_report()), range(3)))

    assert pages == [page] * 3


def test_odd_names_do_not_break_the_plots() -> None:
    odd = [numeric("price $ usd", drifted=True), numeric("$x$ and $", drifted=False), categorical("a_b^c")]
    report = DriftReport(
        "m", 1, "regression", "w", None, None, 1, odd, None, timeline([f.feature for f in odd], 1)
    )

    html = render_html(report)

    assert html.count("<svg") == len(odd) + 1


def test_writing_into_a_missing_folder_creates_it(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "report.html"

    assert write_html(bare_report(), target) == target
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]  # no temporary file left


def test_rewriting_replaces_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("old", encoding="utf-8")

    write_html(bare_report(), target)

    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_a_path_under_a_file_raises_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder", encoding="utf-8")

    with pytest.raises(ReportError) as raised:
        write_html(bare_report(), blocker / "report.html")

    assert isinstance(raised.value, LayeropsError)
    message = str(raised.value)
    assert "\n" not in message and str(blocker / "report.html") in message
    assert list(tmp_path.iterdir()) == [blocker]
