"""`layerops drift` and `layerops feedback`: a shell over `layerops.api.monitoring`.

`drift` exits 0 when nothing drifted and 3 when a feature or the predictions did (for scripts and
schedulers); 1 with one line for anything it cannot check (no log, too few rows, no reference).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from layerops.monitoring.results import DriftReport, FeatureDrift
    from layerops.settings import Settings

console = Console()
DRIFT_EXIT = 3
"""`layerops drift`'s exit code when drift was detected."""


def drift(  # noqa: PLR0913 - a typer command: each option is a parameter
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Registered model name.", show_default=False)],
    since: Annotated[
        str | None,
        typer.Option(help="Rows logged since a duration ago (90s, 15m, 2h, 7d, 1w) or an ISO time."),
    ] = None,
    until: Annotated[str | None, typer.Option(help="Rows logged before this ISO time.")] = None,
    last: Annotated[int | None, typer.Option(min=1, help="Only the last N logged rows.")] = None,
    version: Annotated[
        int | None, typer.Option(min=1, help="The version to check (default: the most recently logged).")
    ] = None,
    html: Annotated[
        Path | None, typer.Option(help="Write a self-contained HTML report with plots here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON (no table).")] = False,
    slices: Annotated[int, typer.Option(min=0, max=100, help="Time slices for drift over time.")] = 10,
    log: Annotated[
        str | None,
        typer.Option(help="The prediction log (default: LAYEROPS_PREDICTION_LOG, else <home>/predictions)."),
    ] = None,
) -> None:
    """Compare logged inputs and predictions with the training reference (KS, chi-square, PSI).

    Exit code: 0 no drift, 3 drift detected, 1 when the check cannot run.
    """
    from layerops.api import monitoring

    settings: Settings = ctx.obj
    plots = monitoring.preload("layerops.monitoring.report") if html is not None else None
    report = monitoring.drift(
        name,
        version=version,
        last=last,
        since=since,
        until=until,
        slices=slices,
        log=log,
        home=settings.home,
        tracking_uri=settings.tracking_uri,
    )
    if html is not None:
        if plots is not None:
            plots.join()
        from layerops.monitoring.report import write_html

        written = write_html(report, html)
        if not as_json:
            console.print(f"report: {written}", highlight=False)
    if as_json:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2, allow_nan=False) + "\n")
    else:
        _print(report)
    if report.drifted:
        raise typer.Exit(DRIFT_EXIT)


def _print(report: DriftReport) -> None:
    console.print(
        f"{report.model} v{report.version}: {report.rows:,} logged rows ({report.window})", highlight=False
    )
    table = Table("feature", "test", "statistic", "p-value", "threshold", "psi", "verdict")
    for item in [*report.features, *([report.prediction] if report.prediction else [])]:
        table.add_row(*_row(item))
    console.print(table)
    quality = report.performance
    if quality is not None:
        if quality.observed is not None:
            console.print(
                f"{quality.metric} on {quality.labelled_rows:,} labelled rows: {quality.observed:.4f} "
                f"(training test: {_fmt(quality.training)})",
                highlight=False,
            )
        if quality.estimated is not None:
            console.print(
                f"estimated {quality.estimated_metric} (from predicted probabilities, an estimate): "
                f"{quality.estimated:.4f}",
                highlight=False,
            )
    for note in report.notes:
        console.print(f"note: {note}", highlight=False)
    drifted = report.drifted_features() + (
        ["prediction"] if report.prediction and report.prediction.drifted else []
    )
    verdict = f"DRIFT in {', '.join(drifted)}" if drifted else "no drift"
    console.print(verdict, style="bold red" if drifted else "bold green", highlight=False)


def _row(item: FeatureDrift) -> list[str]:
    verdict = "DRIFT" if item.drifted else ("not tested" if item.statistic is None else "ok")
    return [
        item.feature,
        item.test,
        _fmt(item.statistic),
        _fmt(item.p_value, pvalue=True),
        item.threshold,
        _fmt(item.statistics.get("psi")),
        verdict if item.note is None or item.drifted else f"{verdict} ({item.note})",
    ]


def _fmt(value: float | None, *, pvalue: bool = False) -> str:
    if value is None:
        return "–"
    if pvalue and value < 1e-4:
        return f"{value:.1e}"
    return f"{value:.4f}"


def feedback(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Registered model name.", show_default=False)],
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV or Parquet with request_id, label (and optionally row).", show_default=False
        ),
    ],
    version: Annotated[
        int | None,
        typer.Option(min=1, help="The version whose classes check the labels (default: production)."),
    ] = None,
    log: Annotated[
        str | None,
        typer.Option(help="The prediction log (default: LAYEROPS_PREDICTION_LOG, else <home>/predictions)."),
    ] = None,
) -> None:
    """Store ground-truth labels that arrived late, matched to logged predictions by request id.

    Valid rows are stored even when others are refused; exit code 1 when any row was refused.
    """
    from layerops.api import monitoring

    settings: Settings = ctx.obj
    result = monitoring.feedback(
        name, file, version=version, log=log, home=settings.home, tracking_uri=settings.tracking_uri
    )
    console.print(f"stored {result.stored:,} label(s) for {name}", highlight=False)
    if result.rejected:
        for item in result.rejected[:10]:
            console.print(f"  row {item.index}: {item.reason}", highlight=False, markup=False)
        if len(result.rejected) > 10:
            console.print(f"  … and {len(result.rejected) - 10:,} more", highlight=False)
        console.print(f"refused {len(result.rejected):,} row(s)", style="bold red", highlight=False)
        raise typer.Exit(1)
