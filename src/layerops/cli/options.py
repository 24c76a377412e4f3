"""What the training commands (`train`, `retrain`) share: the `--jobs` option and the progress bars."""

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

QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
"""`--quiet/-q`: no progress bars."""


def progress(console: Console, quiet: bool) -> AbstractContextManager[Reporter]:
    """Progress bars on `console`, or nothing with --quiet (imports the training stack)."""
    from layerops.cli.progress import RichReporter
    from layerops.training.pipeline import SilentReporter

    return contextlib.nullcontext(SilentReporter()) if quiet else RichReporter(console)
