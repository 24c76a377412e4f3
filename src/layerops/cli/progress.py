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


_SHORT = {
    "accuracy": "acc",
    "f1_macro": "f1",
    "roc_auc": "auc",
    "log_loss": "loss",
    "single-row latency": "latency",
    "model size": "size",
    "spec order": "order",
}


def leaderboard_table(result: TrainingResult) -> Table:
    """The ranked candidates with quality, latency and resource figures (fits 80 columns).

    Every metric is in the saved CSV; the table shows the selection metric (± its spread over
    the CV folds), the tie-breaking metric, the test metric, time, latency and memory, and what
    broke a tie.
    """
    from layerops.training.selection import secondary_metric

    second = secondary_metric(result.metric, result.task)
    short = _SHORT.get(result.metric, result.metric)
    scored_on = f"{result.folds}-fold CV, mean ± sd" if result.folds else "validation split"
    table = Table(
        title=f"{result.name}: ranked by {result.metric} ({scored_on})",
        caption="★ winner · test: fitted without the test rows · tie: what broke a tie",
    )
    table.add_column("candidate", no_wrap=True)
    table.add_column(f"val {short}", justify="right", no_wrap=True)
    if second:
        table.add_column(f"val {_SHORT.get(second, second)}", justify="right")
    table.add_column(f"test {short}", justify="right")
    table.add_column("fit s", justify="right")
    table.add_column("row ms", justify="right")
    table.add_column("MB", justify="right")
    table.add_column("tie")
    for rank, outcome in enumerate(result.leaderboard, start=1):
        cells = [("★ " if rank == 1 else "") + outcome.name]
        spread = outcome.validation_std.get(result.metric)
        cells.append(
            _fmt(outcome.validation.get(result.metric)) + (f" ±{spread:.3f}" if spread is not None else "")
        )
        if second:
            cells.append(_fmt(outcome.validation.get(second)))
        cells.append(_fmt(outcome.test.get(result.metric)))
        cells.append(f"{outcome.resources.get('wall_seconds', 0.0):.2f}")
        cells.append(f"{outcome.latency['single_row_p50_ms']:.2f}")
        cells.append(f"{outcome.resources.get('peak_rss_mb', 0.0):.0f}")
        cells.append(_SHORT.get(outcome.tie_break, outcome.tie_break))
        table.add_row(*cells)
    return table


def final_model_line(result: TrainingResult) -> str:
    """What the registered model was fitted on and how it scored on the test split."""
    final, metric = result.final, result.metric
    short = _SHORT.get(metric, metric)
    fitted = " + ".join(final.fit_splits)
    test = f"test {short} {_fmt(final.test.get(metric))}"
    if final.test_scored == "final":
        scored = f"{test} (as selected {_fmt(result.winner.test.get(metric))})"
    else:
        scored = f"{test}, the selected model's: the final one saw the test rows"
    return f"final model: {result.winner.name} refitted on {fitted} ({final.fit_rows:,} rows); {scored}"


def _fmt(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.3f}"
