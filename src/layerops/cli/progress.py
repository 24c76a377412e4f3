"""Progress bars and tables for training, drawn with rich."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from layerops.training.pipeline import TrainingResult


class RichReporter:
    """Draws one progress bar per candidate (a step per tuning trial) and stage notes."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._progress = Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[best]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> RichReporter:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def stage(self, message: str) -> None:
        """Print a stage note above the bars."""
        self._progress.console.print(f"[dim]•[/dim] {message}")

    def candidate_start(self, name: str, trials: int) -> None:
        """Add a bar for the candidate."""
        self._tasks[name] = self._progress.add_task(name, total=trials, best="")

    def trial(self, name: str, number: int, value: float) -> None:
        """Advance the candidate's bar."""
        self._progress.update(self._tasks[name], completed=number, best=f"last {value:.4f}")

    def candidate_end(self, name: str, metrics: dict[str, float]) -> None:
        """Complete the candidate's bar."""
        task = self._tasks[name]
        total = self._progress.tasks[task].total
        self._progress.update(task, completed=total, best="done")


_SHORT = {"accuracy": "acc", "f1_macro": "f1", "roc_auc": "auc", "log_loss": "loss"}


def leaderboard_table(result: TrainingResult) -> Table:
    """The ranked candidates with quality, latency and resource figures (fits 80 columns)."""
    classification = result.task == "classification"
    quality = ["accuracy", "f1_macro", "roc_auc", "log_loss"] if classification else ["rmse", "mae", "r2"]
    table = Table(title=f"{result.name}: ranked by validation {result.metric}", caption="★ winner")
    table.add_column("candidate", no_wrap=True)
    for metric in quality:
        table.add_column(f"val {_SHORT.get(metric, metric)}", justify="right")
    table.add_column(f"test {_SHORT.get(result.metric, result.metric)}", justify="right")
    table.add_column("fit s", justify="right")
    table.add_column("row ms", justify="right")
    table.add_column("MB", justify="right")
    for rank, outcome in enumerate(result.leaderboard, start=1):
        cells = [("★ " if rank == 1 else "") + outcome.name]
        cells += [_fmt(outcome.validation.get(m)) for m in quality]
        cells.append(_fmt(outcome.test.get(result.metric)))
        cells.append(f"{outcome.resources.get('wall_seconds', 0.0):.2f}")
        cells.append(f"{outcome.latency['single_row_p50_ms']:.2f}")
        cells.append(f"{outcome.resources.get('peak_rss_mb', 0.0):.0f}")
        table.add_row(*cells)
    return table


def _fmt(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.3f}"
