"""What the training commands share: `--jobs` (train, retrain), `--dask` (train) and the progress bars."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from layerops.training.cores import available_cores

if TYPE_CHECKING:
    from layerops.training.pipeline import Reporter

JobsOption = Annotated[
    int | None,
    typer.Option(
        "--jobs",
        "-j",
        min=1,
        show_default=False,
        help="Threads each model trains on (default: the cores this process may use, "
        f"here {available_cores()})",
    ),
]
"""`--jobs/-j`: the threads every model trains on."""


def _dask_address(value: str | None) -> str | None:
    """Refuse a `--dask` value that names no cluster, before anything is loaded (a usage error)."""
    from layerops.training.distributed import ALLOWED, is_address  # no Dask import

    if value is not None and not is_address(value):
        raise typer.BadParameter(f"{value!r}; use {ALLOWED}")
    return value


DaskOption = Annotated[
    str | None,
    typer.Option(
        "--dask",
        metavar="ADDRESS",
        show_default=False,
        callback=_dask_address,
        help="Fit each candidate as a task on a Dask cluster: local:N (N worker processes here, "
        "stopped after the fits) or a scheduler address, e.g. tcp://scheduler:8786. Same leaderboard "
        "as without; models train on their worker's threads (or --jobs).",
    ),
]
"""`--dask ADDRESS`: where the candidates fit (default: in this process)."""

QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
"""`--quiet/-q`: no progress bars."""


def progress(console: Console, quiet: bool) -> AbstractContextManager[Reporter]:
    """Progress bars on `console`, or nothing with --quiet (imports the training stack)."""
    from layerops.cli.progress import RichReporter
    from layerops.training.pipeline import SilentReporter

    return contextlib.nullcontext(SilentReporter()) if quiet else RichReporter(console)
