"""`layerops batch-predict`: a shell over `layerops.api.batch` with a progress bar over partitions.

Exit codes: 0 done (rejected rows included: they are reported and written, not an error); 1 with
one `error:` line for what layerops can name (unknown model, missing column, an OUTPUT written by
another version, an unreachable scheduler); 130 on Ctrl-C, after which the same command resumes.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

if TYPE_CHECKING:
    from layerops.batch import BatchProgress
    from layerops.settings import Settings

console = Console()
err_console = Console(stderr=True)
INTERRUPTED = 130
DEFAULT_PARTITION_ROWS = 200_000
"""`layerops.batch.DEFAULT_PARTITION_ROWS`, repeated so that `--help` does not import pyarrow."""


def batch_predict(  # noqa: PLR0913 - a typer command: each option is a parameter
    ctx: typer.Context,
    model: Annotated[
        str,
        typer.Argument(help="NAME (its production alias), NAME@ALIAS or NAME@VERSION.", show_default=False),
    ],
    input: Annotated[
        str,
        typer.Argument(
            help="A .csv or .parquet file, or a folder of them (a partitioned dataset); a path or an "
            "s3:// URL (endpoint from AWS_ENDPOINT_URL or MLFLOW_S3_ENDPOINT_URL, credentials from "
            "the AWS environment).",
            show_default=False,
        ),
    ],
    output: Annotated[
        str,
        typer.Argument(
            help="The folder to write: one part-NNNNN.parquet per input partition, rejected rows "
            "under _rejects/, the run's record in _manifest.json. Rerun the same command to resume.",
            show_default=False,
        ),
    ],
    dask: Annotated[
        str | None,
        typer.Option(
            help="Score on Dask: local:N starts N one-thread worker processes here, or a scheduler "
            "address (tcp://host:8786). Workers read Parquet partitions themselves (a CSV is read "
            "here and its partitions sent) and write OUTPUT: on remote workers use s3:// or a "
            "shared folder.",
        ),
    ] = None,
    partition_rows: Annotated[
        int,
        typer.Option(
            min=1,
            help="Rows per partition: what is read, scored and written at once (memory follows it).",
        ),
    ] = DEFAULT_PARTITION_ROWS,
    keep: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated input columns to copy into the output, e.g. id (default: every "
            "column; '' for none). row_number always links a row to its input.",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace an OUTPUT written by another model version or from other input (only "
            "the files batch-predict wrote are deleted).",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Score a CSV or Parquet input with a registered model, partition by partition, into Parquet."""
    from layerops.api.batch import batch_predict as run

    settings: Settings = ctx.obj
    columns = None if keep is None else [name.strip() for name in keep.split(",") if name.strip()]
    bar = None if quiet else _Bar()
    try:
        with bar if bar is not None else contextlib.nullcontext():
            summary = run(
                model,
                input,
                output,
                dask=dask,
                partition_rows=partition_rows,
                keep=columns,
                overwrite=overwrite,
                home=settings.home,
                tracking_uri=settings.tracking_uri,
                progress=bar.update if bar is not None else None,
            )
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: the partitions written to {output} are kept; the same command resumes",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(INTERRUPTED) from None
    console.print(summary.line(), highlight=False, soft_wrap=True)
    if summary.rows_rejected:
        console.print(
            f"rejected rows and their reasons: {summary.output.rstrip('/')}/_rejects/", highlight=False
        )


class _Bar:
    """A rich bar over partitions (a spinner and a count while a CSV's total is unknown)."""

    def __init__(self) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("partitions"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rows]} rows"),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        )
        self._task = self._progress.add_task("partitions", total=None, rows="0")

    def __enter__(self) -> _Bar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, state: BatchProgress) -> None:
        """Move the bar to `state`."""
        self._progress.update(
            self._task, completed=state.partitions, total=state.total, rows=f"{state.rows:,}"
        )
