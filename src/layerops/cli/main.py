"""`layerops`: train pipelines from a spec and manage the registered models.

Start-up is part of the interface: this module imports only typer and rich. The settings
(pydantic-settings) are built once the command line parsed, and the ML stack (scikit-learn,
pandas, MLflow) is imported inside the commands that need it, after their arguments and the spec
were checked: a usage error or a spec typo is reported in a fraction of a second, and the read
commands (`models list/show/history`, in `cli.models`) import none of it.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import sys
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from layerops.cli.batch import batch_predict as batch_predict_command
from layerops.cli.models import models_app
from layerops.cli.monitoring import drift as drift_command
from layerops.cli.monitoring import feedback as feedback_command
from layerops.cli.options import DaskOption, JobsOption, progress
from layerops.cli.retrain import retrain as retrain_command
from layerops.cli.serve import serve as serve_command
from layerops.errors import LayeropsError

if TYPE_CHECKING:
    from layerops.repository.api import ModelRepository
    from layerops.settings import Settings
    from layerops.training.pipeline import Reporter

app = typer.Typer(
    help="layerops: from a tabular data file to a registered, reproducible model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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
        str | None,
        typer.Option(
            help="DEBUG, INFO, WARNING, ERROR or CRITICAL (env: LAYEROPS_LOG_LEVEL; default WARNING)"
        ),
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
    from layerops.settings import load_settings  # pydantic-settings: a tenth of a second, not for --help

    settings = load_settings(**overrides)
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = settings


def _repository(ctx: typer.Context) -> ModelRepository:
    from layerops.repository.factory import open_repository

    settings: Settings = ctx.obj
    return open_repository(settings)


def _progress(quiet: bool) -> AbstractContextManager[Reporter]:
    """Progress bars on the console, or nothing with --quiet (imports the training stack)."""
    return progress(console, quiet)


@app.command()
def train(  # noqa: PLR0913 - a command's options
    ctx: typer.Context,
    spec_file: Annotated[Path, typer.Argument(help="The pipeline spec (YAML).", show_default=False)],
    register: Annotated[
        bool, typer.Option(help="Log the runs and register the winner (--no-register: dry run).")
    ] = True,
    alias: Annotated[
        str | None, typer.Option(help="Point this alias (e.g. production) at the new version.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    jobs: JobsOption = None,
    refit_all: Annotated[
        bool,
        typer.Option(
            "--refit-all",
            help="Refit the winner on train + validation + test (default: train + validation; the "
            "test split stays held out). Recorded in the lineage; the test metric is then the "
            "selected model's.",
        ),
    ] = False,
    dask: DaskOption = None,
) -> None:
    """Train every candidate of SPEC_FILE, rank them, refit the winner and register it as a new version."""
    from layerops.spec import load_spec

    spec = load_spec(spec_file)  # refuse a bad spec before importing the ML stack (seconds)
    from layerops.training.distributed import SchedulerUnreachableError, probe  # no Dask import

    try:  # a scheduler that is not running fails now, not after the imports
        if dask is not None:
            probe(dask)
    except SchedulerUnreachableError as exc:
        raise LayeropsError(f"--dask: {exc}") from exc
    if refit_all:
        spec = spec.model_copy(update={"selection": spec.selection.model_copy(update={"refit_all": True})})
    from layerops.cli.progress import final_model_line, leaderboard_table
    from layerops.repository.factory import OpenInBackground, prepare_folders
    from layerops.training.pipeline import leaderboard_csv
    from layerops.training.pipeline import train as run_training

    # Opening the repository (importing MLflow, creating a store) takes seconds: it overlaps with
    # the fits. The embedded store's folders are made now, so a bad home fails before training;
    # a configured server that is unreachable fails within the first second.
    opener = OpenInBackground(functools.partial(_repository, ctx)) if register else None
    if opener is not None and ctx.obj.tracking_uri:
        opener.check(1.0)
    elif opener is not None:
        prepare_folders(ctx.obj)
    with _progress(quiet) as reporter:
        try:
            result = run_training(spec, opener, reporter=reporter, jobs=jobs, dask=dask)
        except SchedulerUnreachableError as exc:
            raise LayeropsError(f"--dask: {exc}") from exc
    repository = opener() if opener is not None else None
    console.print(leaderboard_table(result))
    console.print(final_model_line(result))
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


app.command("retrain")(retrain_command)
app.command("serve")(serve_command)
app.command("batch-predict")(batch_predict_command)
app.command("drift")(drift_command)
app.command("feedback")(feedback_command)


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


def run() -> None:
    """Entry point: click's usage message and exit 2 for a usage error; one line and exit 1 for a
    `LayeropsError`; "interrupted" and exit 130 for Ctrl-C. Never a traceback for a user's mistake.
    """
    try:
        # Standalone mode: click prints usage errors (exit 2) and turns Ctrl-C into exit 130.
        app()
    except LayeropsError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except SystemExit as exc:
        if exc.code == INTERRUPTED:
            err_console.print("interrupted: nothing was registered unless it was reported above")
        raise
    except KeyboardInterrupt:  # outside a command (while the command line is parsed)
        err_console.print("interrupted")
        sys.exit(INTERRUPTED)


INTERRUPTED = 130
"""Exit code of a command stopped by Ctrl-C (128 + SIGINT)."""


def command() -> None:
    """The `layerops` command: `run()`, then leave without the interpreter's teardown.

    Freeing a training's heap object by object (MLflow, SQLAlchemy, pandas, the fitted models)
    took over a second after the work was done and reported. The exit handlers still run and the
    streams are flushed; with another thread still running, the process ends the usual way.
    """
    try:
        run()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if isinstance(exc.code, str):
            err_console.print(exc.code, highlight=False)
    if threading.active_count() > 1:
        sys.exit(code)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    command()
