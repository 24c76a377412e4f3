"""`layerops`: train pipelines from a spec and manage the registered models.

Heavy imports (scikit-learn, MLflow) happen inside the commands so `--help` stays instant.
"""

from __future__ import annotations

import logging
import sys
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from layerops.cli.serve import serve as serve_command
from layerops.errors import LayeropsError
from layerops.settings import Settings

if TYPE_CHECKING:
    from layerops.repository.api import ModelRepository

app = typer.Typer(
    help="layerops: from a tabular data file to a registered, reproducible model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(
    help="Inspect registered models; promote and roll back aliases.", no_args_is_help=True
)
app.add_typer(models_app, name="models")

console = Console()
err_console = Console(stderr=True)


@app.callback()
def main(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(help="Folder of the embedded repository (env: LAYEROPS_HOME; default .layerops)"),
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(help="MLflow tracking URI (env: LAYEROPS_TRACKING_URI; default sqlite under --home)"),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="DEBUG, INFO, WARNING... (env: LAYEROPS_LOG_LEVEL)")
    ] = None,
) -> None:
    """Settings come from LAYEROPS_* environment variables; these options override them."""
    overrides: dict[str, Any] = {}
    if home is not None:
        overrides["home"] = home
    if tracking_uri is not None:
        overrides["tracking_uri"] = tracking_uri
    if log_level is not None:
        overrides["log_level"] = log_level
    try:
        settings = Settings(**overrides)
    except ValueError as exc:
        raise LayeropsError(f"invalid setting: {str(exc).splitlines()[-1].strip()}") from None
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = settings


def _repository(ctx: typer.Context) -> ModelRepository:
    from layerops.repository.factory import open_repository

    settings: Settings = ctx.obj
    return open_repository(settings)


@app.command()
def train(
    ctx: typer.Context,
    spec_file: Annotated[Path, typer.Argument(help="The pipeline spec (YAML).", show_default=False)],
    register: Annotated[
        bool, typer.Option(help="Log the runs and register the winner (--no-register: dry run).")
    ] = True,
    alias: Annotated[
        str | None, typer.Option(help="Point this alias (e.g. production) at the new version.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train every candidate of SPEC_FILE, rank them, and register the winner as a new version."""
    from layerops.cli.progress import RichReporter, leaderboard_table
    from layerops.spec import load_spec
    from layerops.training.pipeline import SilentReporter, leaderboard_csv
    from layerops.training.pipeline import train as run_training

    spec = load_spec(spec_file)  # refuse a bad spec before touching anything else
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="layerops-open-repository") as pool:
        # Opening the repository (importing MLflow, migrating a new database) takes seconds;
        # it overlaps with training. An unreachable server fails within the first second.
        pending = pool.submit(_repository, ctx) if register else None
        if pending is not None:
            wait([pending], timeout=1.0)
            if pending.done():
                pending.result()
        source = pending.result if pending is not None else None
        if quiet:
            result = run_training(spec, source, reporter=SilentReporter())
        else:
            with RichReporter(console) as reporter:
                result = run_training(spec, source, reporter=reporter)
        repository = pending.result() if pending is not None else None
    console.print(leaderboard_table(result))
    settings: Settings = ctx.obj
    board = settings.home / "leaderboards" / f"{spec.name}.csv"
    board.parent.mkdir(parents=True, exist_ok=True)
    board.write_text(leaderboard_csv(result), encoding="utf-8")
    console.print(f"leaderboard saved to {board}")
    onnx = result.bundle.metadata.onnx
    onnx_note = (
        f"ONNX parity max error {onnx.max_abs_error:.2e}" if onnx.converted else f"no ONNX: {onnx.reason}"
    )
    if result.version is None:
        console.print(f"dry run: winner {result.winner.name} ({onnx_note}); nothing registered")
        return
    console.print(
        f"registered [bold]{spec.name}[/bold] version {result.version.version} "
        f"({result.winner.name}; {onnx_note})"
    )
    if alias and repository is not None:
        change = repository.set_alias(
            spec.name, alias, result.version.version, reason="set by layerops train --alias"
        )
        console.print(f"alias {alias} → version {change.version}")


app.command("serve")(serve_command)


keys_app = typer.Typer(help="API keys for `layerops serve`.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("hash")
def keys_hash(
    key: Annotated[str | None, typer.Argument(help="The key; omit to read it from standard input.")] = None,
) -> None:
    """Print the SHA-256 digest of a key, for LAYEROPS_API_KEY_FILE (the key itself is never stored)."""
    from layerops.delivery.auth import KeyStore

    secret = key if key is not None else sys.stdin.readline().strip()
    if not secret:
        raise LayeropsError("no key given: pass it as an argument or on standard input")
    console.print(KeyStore.hash_key(secret), highlight=False)


@keys_app.command("new")
def keys_new() -> None:
    """Print a new random API key and its SHA-256 digest."""
    import secrets

    from layerops.delivery.auth import KeyStore

    key = secrets.token_urlsafe(32)
    console.print(f"key:    {key}\ndigest: {KeyStore.hash_key(key)}", highlight=False)


@app.command("demo-data")
def demo_data(
    folder: Annotated[Path, typer.Argument(help="Where to write iris.csv and shipping.csv.")] = Path(
        "examples/data"
    ),
) -> None:
    """Write the demo data sets (made locally: nothing is downloaded)."""
    from layerops.datasets import write_examples

    for path in write_examples(folder):
        console.print(f"wrote {path}")


@models_app.command("list")
def models_list(ctx: typer.Context) -> None:
    """Every registered model with its latest version and aliases."""
    summaries = _repository(ctx).list_models()
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
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[int | None, typer.Option(help="Version number (default: latest).")] = None,
    alias: Annotated[str | None, typer.Option(help="Show the version this alias points to.")] = None,
) -> None:
    """A version's tags, lineage and metrics."""
    repository = _repository(ctx)
    if alias is not None:
        entry = repository.resolve_alias(name, alias)
    elif version is not None:
        entry = repository.get_version(name, version)
    else:
        entry = repository.list_versions(name)[0]
    table = Table(title=f"{entry.name} version {entry.version}", show_header=False)
    table.add_row("aliases", ", ".join(entry.aliases) or "–")
    table.add_row("created", entry.created_at.isoformat(timespec="seconds"))
    table.add_row("run", entry.run_id or "–")
    table.add_row("source", entry.source)
    for key, value in sorted(entry.tags.items()):
        table.add_row(key, value)
    console.print(table)


@models_app.command("history")
def models_history(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Registered model name.")]
) -> None:
    """Versions and every alias change (when, from which version, why)."""
    repository = _repository(ctx)
    versions = Table("version", "created", "aliases", "run", title=f"{name}: versions")
    for v in repository.list_versions(name):
        versions.add_row(
            str(v.version),
            v.created_at.isoformat(timespec="seconds"),
            ", ".join(v.aliases) or "–",
            v.run_id or "–",
        )
    console.print(versions)
    changes = Table("when", "alias", "from", "to", "reason", title=f"{name}: alias changes")
    for c in repository.history(name):
        changes.add_row(
            c.at.isoformat(timespec="seconds"), c.alias, _v(c.previous), _v(c.version), c.reason or "–"
        )
    console.print(changes)


def _v(version: int | None) -> str:
    return "–" if version is None else f"v{version}"


@models_app.command("promote")
def models_promote(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[int | None, typer.Option(help="Version to promote (default: latest).")] = None,
    alias: Annotated[str, typer.Option(help="Alias to point at the version.")] = "production",
    reason: Annotated[str, typer.Option(help="Why; kept in the history.")] = "",
) -> None:
    """Point an alias (default: production) at a version."""
    repository = _repository(ctx)
    target = version if version is not None else repository.list_versions(name)[0].version
    change = repository.set_alias(
        name, alias, target, reason=reason or "promoted with layerops models promote"
    )
    console.print(f"{name}: {alias} {_v(change.previous)} → {_v(change.version)}")


@models_app.command("rollback")
def models_rollback(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    alias: Annotated[str, typer.Option(help="Alias to move back.")] = "production",
    reason: Annotated[str, typer.Option(help="Why; kept in the history.")] = "",
) -> None:
    """Move an alias back to the version it pointed to before its last change."""
    change = _repository(ctx).rollback(
        name, alias, reason=reason or "rolled back with layerops models rollback"
    )
    console.print(f"{name}: {alias} {_v(change.previous)} → {_v(change.version)}")


def run() -> None:
    """Entry point: user errors become one line on stderr and exit code 1, never a traceback."""
    try:
        app(standalone_mode=False)
    except LayeropsError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted: nothing was registered unless it was reported above")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    run()
