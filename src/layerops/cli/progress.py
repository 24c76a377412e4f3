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


def leaderboard_table(result: TrainingResult) -> Table:
    """The ranked candidates with quality, latency and resource figures."""
    classification = result.task == "classification"
    quality = ["accuracy", "f1_macro", "roc_auc", "log_loss"] if classification else ["rmse", "mae", "r2"]
    table = Table(title=f"{result.name}: ranked by validation {result.metric}")
    table.add_column("#", justify="right")
    table.add_column("candidate")
    for metric in quality:
        table.add_column(f"val {metric}", justify="right")
    table.add_column(f"test {result.metric}", justify="right")
    table.add_column("train s", justify="right")
    table.add_column("1-row p50 ms", justify="right")
    table.add_column("batch p50 ms", justify="right")
    table.add_column("peak MB", justify="right")
    for rank, outcome in enumerate(result.leaderboard, start=1):
        cells = [str(rank), outcome.name + (" ★" if rank == 1 else "")]
        cells += [_fmt(outcome.validation.get(m)) for m in quality]
        cells.append(_fmt(outcome.test.get(result.metric)))
        cells.append(f"{outcome.resources.get('wall_seconds', 0.0):.2f}")
        cells.append(f"{outcome.latency['single_row_p50_ms']:.3f}")
        cells.append(f"{outcome.latency['batch_p50_ms']:.2f}")
        cells.append(f"{outcome.resources.get('peak_rss_mb', 0.0):.0f}")
        table.add_row(*cells)
    return table


def _fmt(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.4f}"
