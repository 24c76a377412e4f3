"""`layerops models ...`: a shell over `layerops.models` (the Python API).

The read commands (`list`, `show`, `history`) use the API's dataclass functions, which read an
embedded registry without importing pandas or MLflow, and never create a repository: run from
the wrong folder, they say where they looked.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypedDict

import typer
from rich.console import Console
from rich.table import Table

from layerops.repository.api import LINEAGE_TAGS

if TYPE_CHECKING:
    from layerops.repository.api import VersionDetails
    from layerops.settings import Settings

models_app = typer.Typer(
    help="Inspect registered models; promote and roll back aliases.", no_args_is_help=True
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
    """Versions and every alias change (when, from which version, why)."""
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
    changes = Table("when", "alias", "from", "to", "reason", title=f"{name}: alias changes")
    for c in models.changes(name, **_where(ctx)):
        changes.add_row(
            c.at.isoformat(timespec="seconds"), c.alias, _v(c.previous), _v(c.version), c.reason or "–"
        )
    console.print(changes)


def _v(version: int | None) -> str:
    return "–" if version is None else f"v{version}"


@models_app.command("promote")
def models_promote(
    ctx: typer.Context,
    name: NameArgument,
    version: Annotated[int | None, typer.Option(min=1, help="Version to promote (default: latest).")] = None,
    alias: Annotated[str, typer.Option(help="Alias to point at the version.")] = "production",
    reason: Annotated[str, typer.Option(help="Why; kept in the history.")] = "",
) -> None:
    """Point an alias (default: production) at a version."""
    from layerops.api import models

    change = models.promote(
        name,
        version=version,
        alias=alias,
        reason=reason or "promoted with layerops models promote",
        **_where(ctx),
    )
    console.print(f"{name}: {alias} {_v(change.previous)} → {_v(change.version)}")


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
