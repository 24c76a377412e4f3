"""Progress events of a training run: the `Reporter` the CLI draws and tests record.

Every call comes from the thread that called `train`, also when the trials run on Dask workers
(`distributed` forwards their events), so a reporter needs no lock.
"""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    """Receives progress events; the CLI draws them, tests may record them."""

    def stage(self, message: str) -> None:
        """A pipeline step started (or a note about it)."""

    def candidate_start(self, name: str, trials: int) -> None:
        """A candidate's tuning starts with at most `trials` trials."""

    def trial(self, name: str, number: int, value: float) -> None:
        """A trial of candidate `name` finished with score `value`."""

    def candidate_end(self, name: str, metrics: dict[str, float]) -> None:
        """A candidate was refitted and evaluated."""


class SilentReporter:
    """A reporter that ignores every event."""

    def stage(self, message: str) -> None:
        """Ignore."""

    def candidate_start(self, name: str, trials: int) -> None:
        """Ignore."""

    def trial(self, name: str, number: int, value: float) -> None:
        """Ignore."""

    def candidate_end(self, name: str, metrics: dict[str, float]) -> None:
        """Ignore."""
