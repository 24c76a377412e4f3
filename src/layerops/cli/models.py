"""`layerops models ...`: a shell over `layerops.models` (the Python API).

The read commands (`list`, `show`, `history`) use the API's dataclass functions, which read an
embedded registry without importing pandas or MLflow, and never create a repository: run from
the wrong folder, they say where they looked.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

import typer
from rich.console import Console
from rich.table import Table

from layerops.repository.api import LINEAGE_TAGS

if TYPE_CHECKING:
    from layerops.repository.api import VersionDetails
    from layerops.settings import Settings

models_app = typer.Typer(
    help="Inspect registered models; promote (through the gate) and roll back aliases.", no_args_is_help=True
)

console = Console()

NameArgument = Annotated[str, typer.Argument(help="Registered model name.", show_default=False)]


class _Where(TypedDict):
    home: Path
    tracking_uri: str | None


def _where(ctx: typer.Context) -> _Where:
    """The API's `home=` and `tracking_uri=` for the settings the command line built."""
    settings: Settings = ctx.obj
    return {"home": settings.home, "tracking_uri": settings.tracking_uri}


@models_app.command("list")
def models_list(ctx: typer.Context) -> None:
    """Every registered model with its latest version and aliases."""
    from layerops.api import models

    summaries = models.summaries(**_where(ctx))
    if not summaries:
        console.print("no registered models yet: run `layerops train SPEC`")
        return
    table = Table("model", "latest", "aliases", "description")
    for s in summaries:
        aliases = ", ".join(f"{a}→v{v}" for a, v in sorted(s.aliases.items())) or "–"
        table.add_row(s.name, str(s.latest_version or "–"), aliases, s.description)
    console.print(table)


@models_app.command("show")
def models_show(
    ctx: typer.Context,
    name: NameArgument,
    version: Annotated[int | None, typer.Option(min=1, help="Version number (default: latest).")] = None,
    alias: Annotated[str | None, typer.Option(help="Show the version this alias points to.")] = None,
) -> None:
    """A version: lineage, validation and test metrics, latency and library versions."""
    from layerops.api import models

    details = models.details(name, version=version, alias=alias, **_where(ctx))
    for line in show_lines(details):
        console.print(line, soft_wrap=True, highlight=False, markup=False)


def show_lines(details: VersionDetails) -> list[str]:
    """`models show` as plain lines: one fact a line, so no hash or path is ever cut."""
    entry = details.version
    lines = [f"{entry.name} version {entry.version}"]
    lines += _section(
        "",
        {
            "aliases": ", ".join(entry.aliases) or "–",
            "created": entry.created_at.isoformat(timespec="seconds"),
            "run": entry.run_id or "–",
            "candidate": entry.tags.get("layerops.winner", "–"),
            "description": entry.description or "–",
        },
    )
    # Every lineage line in the same order, "–" for what this version did not record (no git
    # repository around the spec; older versions recorded less).
    lineage = {label: details.lineage.get(label, "–") for label in LINEAGE_TAGS} if details.lineage else {}
    if "git dirty" in details.lineage:
        lineage["git commit"] = lineage["git commit"].removesuffix("+dirty")
    lines += _section("lineage", lineage or {"recorded": "none (not registered by layerops train)"})
    lines.append("metrics")
    order = ("validation", "validation std", "test", "selected test")
    splits = [split for split in order if details.metrics.get(split)]
    names = sorted({metric for split in splits for metric in details.metrics[split]})
    if names:
        width = max(len(metric) for metric in names)
        lines.append(f"  {'':<{width}}  " + "  ".join(f"{split:>14}" for split in splits))
        for metric in names:
            cells = "  ".join(f"{_number(details.metrics[split].get(metric)):>14}" for split in splits)
            lines.append(f"  {metric:<{width}}  {cells}")
    else:
        lines.append("  none recorded")
    latency = {key: _number(value) for key, value in details.latency.items()}
    if details.training_seconds is not None:
        latency["training seconds"] = _number(details.training_seconds)
    lines += _section("latency", latency or {"recorded": "none"})
    environment = details.libraries or {"recorded": "no (registered before layerops recorded it)"}
    lines += _section("environment", environment)
    return lines


def _section(title: str, rows: dict[str, str]) -> list[str]:
    width = max((len(key) for key in rows), default=0)
    lines = [title] if title else []
    return lines + [f"  {key:<{width}}  {value}" for key, value in rows.items()]


def _number(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"


@models_app.command("history")
def models_history(ctx: typer.Context, name: NameArgument) -> None:
    """Versions, every alias change (when, from which version, why, forced or not, the gate's
    verdict) and the release events (gates that refused, retrains, canary steps)."""
    from layerops.api import models

    versions = Table("version", "created", "aliases", "run", title=f"{name}: versions")
    for v in models.versions(name, **_where(ctx)):
        versions.add_row(
            str(v.version),
            v.created_at.isoformat(timespec="seconds"),
            ", ".join(v.aliases) or "–",
            v.run_id or "–",
        )
    console.print(versions)
    changes = Table("when", "alias", "from", "to", "forced", "reason", "gate", title=f"{name}: alias changes")
    for c in models.changes(name, **_where(ctx)):
        changes.add_row(
            c.at.isoformat(timespec="seconds"),
            c.alias,
            _v(c.previous),
            _v(c.version),
            "forced" if c.forced else "",
            c.reason or "–",
            gate_summary(c.details),
        )
    console.print(changes)
    events = Table("when", "kind", "message", title=f"{name}: release events")
    for e in models.events(name, **_where(ctx)):
        events.add_row(e.at.isoformat(timespec="seconds"), e.kind, e.message or "–")
    console.print(events)


def gate_summary(details: dict[str, Any]) -> str:
    """The promotion gate's verdict in `details` (a gate report, or one under `gate`), one line:
    metric Δ with its interval and the verdict; "–" when the change was not gated."""
    report = details.get("gate") if isinstance(details.get("gate"), dict) else details
    if not isinstance(report, dict) or "passed" not in report or "metric" not in report:
        return "–"
    verdict = "passed" if report["passed"] else "forced" if report.get("forced") else "refused"
    if report.get("incumbent") is None:
        return f"{verdict} (no incumbent)"
    difference, low, high = (report.get(key) for key in ("difference", "ci_low", "ci_high"))
    if not isinstance(difference, int | float):
        return verdict
    interval = (
        f" [{low:+.3g}, {high:+.3g}]"
        if isinstance(low, int | float) and isinstance(high, int | float)
        else ""
    )
    return f"{report['metric']} Δ {difference:+.3g}{interval} {verdict}"


def _v(version: int | None) -> str:
    return "–" if version is None else f"v{version}"


GATE_REFUSED_EXIT = 4
"""Exit code of `models promote` when the promotion gate refused (nothing changed)."""


@models_app.command("promote")
def models_promote(  # noqa: PLR0913 - a typer command: each option is a parameter
    ctx: typer.Context,
    name: NameArgument,
    version: Annotated[int | None, typer.Option(min=1, help="Version to promote (default: latest).")] = None,
    alias: Annotated[str, typer.Option(help="Alias to point at the version.")] = "production",
    reason: Annotated[str, typer.Option(help="Why; kept in the history (required with --force).")] = "",
    eval_data: Annotated[
        Path | None,
        typer.Option(
            help="CSV or Parquet rows with the target to score both versions on (default: the "
            "version's held-out test rows).",
            show_default=False,
        ),
    ] = None,
    margin: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Require the version to win by at least this much on its selection metric (the "
            "interval's lower bound; 0: significantly better). Default: not significantly worse.",
            show_default=False,
        ),
    ] = None,
    max_latency_ratio: Annotated[
        float | None, typer.Option(min=0, help="Most p99 latency relative to the current version [1.5].")
    ] = None,
    max_size_ratio: Annotated[
        float | None, typer.Option(min=0, help="Most bundle size relative to the current version [3].")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if the gate refuses (needs --reason).")
    ] = False,
    gate: Annotated[
        bool, typer.Option("--gate/--no-gate", help="--no-gate: move the alias without scoring anything.")
    ] = True,
) -> None:
    """Point an alias (default: production) at a version, through the promotion gate.

    The gate scores the version and the one the alias points to on the same rows (paired
    bootstrap of the version's selection metric) and checks latency, bundle size and ONNX
    parity. Exit codes: 0 promoted (or the alias was unset: nothing to compare); 4 the gate
    refused and nothing changed; 1 an error; 2 a usage error (e.g. --force without --reason).
    """
    if force and not reason.strip():
        raise typer.BadParameter(
            "--force needs --reason '...': why the gate is overridden", param_hint="--force"
        )
    tuned = {"margin": margin, "max_latency_ratio": max_latency_ratio, "max_size_ratio": max_size_ratio}
    if not gate and (force or eval_data is not None or any(v is not None for v in tuned.values())):
        raise typer.BadParameter(
            "--no-gate scores nothing: drop --force and the gate's options", param_hint="--no-gate"
        )
    from layerops.api import releases
    from layerops.releases.gate import GatePolicy

    policy = GatePolicy(**{key: value for key, value in tuned.items() if value is not None})  # type: ignore[arg-type]
    note = reason or ("" if gate else "promoted with layerops models promote --no-gate")
    promotion = releases.promote(
        name, version=version, alias=alias, force=force, reason=note, eval_data=eval_data,
        policy=policy, gate=gate, **_where(ctx),
    )  # fmt: skip
    if promotion.report is not None:
        for line in promotion.report.lines():
            console.print(line, soft_wrap=True, highlight=False, markup=False)
    change = promotion.change
    if change is None:
        console.print(f"{name}: the gate refused; {alias} unchanged", style="bold red", highlight=False)
        raise typer.Exit(GATE_REFUSED_EXIT)
    forced = " (forced past the gate)" if change.forced else ""
    console.print(f"{name}: {alias} {_v(change.previous)} → {_v(change.version)}{forced}", highlight=False)


@models_app.command("rollback")
def models_rollback(
    ctx: typer.Context,
    name: NameArgument,
    alias: Annotated[str, typer.Option(help="Alias to move back.")] = "production",
    reason: Annotated[str, typer.Option(help="Why; kept in the history.")] = "",
) -> None:
    """Move an alias back to the version it pointed to before its last change."""
    from layerops.api import models

    change = models.rollback(
        name, alias=alias, reason=reason or "rolled back with layerops models rollback", **_where(ctx)
    )
    console.print(f"{name}: {alias} {_v(change.previous)} → {_v(change.version)}")
