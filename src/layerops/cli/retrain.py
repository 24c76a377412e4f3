"""`layerops retrain`: the retraining loop (`layerops.retrain`) and reproductions (`layerops.reproduce`).

Two modes, refused when mixed:
- `retrain NAME --spec SPEC [--data FILE | --from-log [--since 7d]] [--if-drift] [--promote]
  [--margin M]`: train on fresh rows, gate the new version against production, point `candidate`
  (or with `--promote`, `production`) at it. Exit 0: no drift, candidate set or promoted; 4: the
  gate refused (nothing moved, as `models promote`); 1: one line for a user error.
- `retrain NAME (--version V | --alias A) --reproduce`: rebuild a version from its lineage.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from layerops.cli.models import GATE_REFUSED_EXIT  # the gate refused: the same code as `models promote`
from layerops.cli.options import JobsOption, QuietOption, progress

if TYPE_CHECKING:
    from layerops.api.retrain import RetrainResult
    from layerops.settings import Settings

console = Console()


SpecOption = Annotated[
    Path | None,
    typer.Option(help="Retrain with this pipeline spec (YAML; its name must be NAME).", show_default=False),
]
DataOption = Annotated[
    Path | None,
    typer.Option(
        help="Train on this CSV/Parquet file instead of the spec's data source.", show_default=False
    ),
]
FromLogOption = Annotated[
    bool,
    typer.Option(
        "--from-log",
        help="Train on the logged predictions' inputs since --since that have feedback labels "
        "(unlabelled rows are left out; at least 50 labelled rows).",
    ),
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        help="The log window of --from-log and --if-drift: 90s, 15m, 2h, 7d (default), 1w or an ISO time."
    ),
]
IfDriftOption = Annotated[
    bool,
    typer.Option(
        "--if-drift",
        help="First check the production version for drift over the log window; no drift: nothing "
        "is trained (exit 0).",
    ),
]
PromoteOption = Annotated[
    bool,
    typer.Option(
        "--promote", help="On a passed gate move production to the new version (default: candidate)."
    ),
]
MarginOption = Annotated[
    float | None,
    typer.Option(
        min=0.0, help="The gate's margin: how much better than production the new version must score."
    ),
]
ReproduceOption = Annotated[
    bool,
    typer.Option(
        "--reproduce",
        help="Rebuild a version from its recorded lineage: the same spec, data (its content hash checked "
        "first) and seed.",
    ),
]


def retrain(  # noqa: PLR0913 - a typer command: each option is a parameter
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Registered model name.", show_default=False)],
    spec: SpecOption = None,
    data: DataOption = None,
    from_log: FromLogOption = False,
    since: SinceOption = None,
    if_drift: IfDriftOption = False,
    promote: PromoteOption = False,
    margin: MarginOption = None,
    version: Annotated[int | None, typer.Option(min=1, help="--reproduce: the version to rebuild.")] = None,
    alias: Annotated[
        str | None, typer.Option(help="--reproduce: rebuild the version this alias points to.")
    ] = None,
    reproduce: ReproduceOption = False,
    quiet: QuietOption = False,
    jobs: JobsOption = None,
) -> None:
    """Train a registered model again and register the result as a new version.

    Retrain (--spec SPEC): train on the spec's data source, on --data FILE, or on the prediction
    log (--from-log: logged inputs since --since, default 7d, joined with their feedback labels).
    With --if-drift, only when the production version drifted over that window. The new version is
    then gated against production: on a pass it becomes `candidate` (the server's canary takes it
    further), with --promote `production`; on a refusal nothing moves. The version's tags record why
    it was trained and on what (`layerops.retrain.trigger`, `layerops.retrain.data`).

    Reproduce (--reproduce with --version V or --alias A): rebuild that version from its lineage.

    Exit code: 0 no drift, candidate set or promoted (or reproduced); 4 the gate refused; 1 an
    error; 2 a usage error.
    """
    settings: Settings = ctx.obj
    if reproduce or version is not None or alias is not None:
        mixed = _given(spec=spec, data=data, from_log=from_log, since=since, if_drift=if_drift)
        mixed += _given(promote=promote, margin=margin)
        if mixed:
            raise typer.BadParameter(
                f"{', '.join(mixed)} retrain from a spec; --reproduce rebuilds a recorded version",
                param_hint="'--reproduce'",
            )
        _reproduce(settings, name, version, alias, reproduce=reproduce, quiet=quiet, jobs=jobs)
        return
    if spec is None:
        raise typer.BadParameter(
            "give --spec SPEC to retrain, or --reproduce with --version/--alias", param_hint="'--spec'"
        )
    if data is not None and from_log:
        raise typer.BadParameter("give --data FILE or --from-log, not both", param_hint="'--data'")
    if since is not None and not (from_log or if_drift):
        raise typer.BadParameter(
            "--since sets the log window of --from-log or --if-drift", param_hint="'--since'"
        )
    status = _loop(
        settings,
        name,
        spec,
        data=data,
        from_log=from_log,
        since=since or "7d",
        if_drift=if_drift,
        promote=promote,
        margin=margin,
        quiet=quiet,
        jobs=jobs,
    )
    if status == "gate_failed":
        raise typer.Exit(GATE_REFUSED_EXIT)


def _loop(  # noqa: PLR0913 - the command's options for this mode
    settings: Settings,
    name: str,
    spec: Path,
    *,
    data: Path | None,
    from_log: bool,
    since: str,
    if_drift: bool,
    promote: bool,
    margin: float | None,
    quiet: bool,
    jobs: int | None,
) -> str:
    """Run the retraining loop and print what it did; its status."""
    from layerops.spec import load_spec

    pipeline = load_spec(spec)  # a bad spec is refused before the ML stack is imported (seconds)
    policy = None
    if margin is not None:
        from layerops.releases.gate import GatePolicy

        policy = GatePolicy(margin=margin)
    from layerops.api.retrain import retrain as run_retrain

    with progress(console, quiet) as reporter:
        result = run_retrain(
            name,
            pipeline,
            data=data,
            from_log=from_log,
            since=since,
            if_drift=if_drift,
            promote=promote,
            policy=policy,
            home=settings.home,
            tracking_uri=settings.tracking_uri,
            reporter=reporter,
            jobs=jobs,
        )
    return _print(result)


def _given(**options: object) -> list[str]:
    """The options among `options` that were given (not None or False), as flags."""
    return [f"--{key.replace('_', '-')}" for key, value in options.items() if value not in (None, False)]


def _reproduce(
    settings: Settings,
    name: str,
    version: int | None,
    alias: str | None,
    *,
    reproduce: bool,
    quiet: bool,
    jobs: int | None,
) -> None:
    """Rebuild `name`'s version (by number or alias) from its lineage and say so."""
    if not reproduce:
        raise typer.BadParameter(
            "--version/--alias name a version to rebuild: add --reproduce (or retrain with --spec)",
            param_hint="'--reproduce'",
        )
    if (version is None) == (alias is None):
        raise typer.BadParameter("give exactly one of --version and --alias", param_hint="'--version'")
    from layerops.api.reproduce import reproduce as rebuild

    ref = f"{name}@{version if version is not None else alias}"
    with progress(console, quiet) as reporter:
        result = rebuild(
            ref, home=settings.home, tracking_uri=settings.tracking_uri, reporter=reporter, jobs=jobs
        )
    console.print(
        f"reproduced {ref} as [bold]{result.name}[/bold] version {result.version} "
        f"({result.winner}; data and seed as recorded)"
    )


def _print(result: RetrainResult) -> str:
    """Print what the loop did; its status."""
    checked = result.drift
    if checked is not None:
        verdict = f"drift in {result.trigger.removeprefix('drift: ')}" if checked.drifted else "no drift"
        console.print(
            f"{result.name} v{checked.version}: {checked.rows:,} logged rows ({checked.window}): {verdict}",
            highlight=False,
        )
    if result.status == "no_drift":
        console.print("nothing trained", style="bold green", highlight=False)
        return result.status
    console.print(f"trained on {result.source}", highlight=False, soft_wrap=True)
    console.print(
        f"registered [bold]{result.name}[/bold] version {result.version} (trigger: {result.trigger})",
        highlight=False,
    )
    if result.report is not None:
        for line in result.report.lines():
            console.print(line, highlight=False, markup=False, soft_wrap=True)
    change = result.change
    if change is not None:
        before = "–" if change.previous is None else f"v{change.previous}"
        console.print(f"{result.name}: {change.alias} {before} → v{change.version}", highlight=False)
        if change.alias == "candidate":
            console.print("the server's canary takes a candidate to production by steps", highlight=False)
    else:
        console.print(f"the gate refused v{result.version}: nothing moved", style="bold red", highlight=False)
    return result.status
