"""Scoring a whole input: its partitions in order, those already written skipped, the others
scored in this process or as Dask tasks, a bounded number at a time.

In process, one thread reads the next partition while this one checks and scores the current
one and another writes the previous one (pyarrow and ONNX Runtime work without the GIL): memory
holds up to three partitions. With Dask, each task is a unit of `sources.units`: a CSV partition,
read here (only reading a CSV in order tells where its rows are) and scattered to a worker, or a
Parquet run, which the worker reads itself from the input (so a Parquet INPUT must be reachable
from the workers, like OUTPUT, which the workers write: any path on a `LocalCluster`, `s3://` or
a shared filesystem on remote workers). At most `IN_FLIGHT_PER_THREAD` tasks per worker thread
are in flight, so memory stays bounded by the partition size on both sides.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from layerops.batch._parquet import ParquetRun
from layerops.batch.output import FORMAT, OutputFolder, Written
from layerops.batch.partition import Partition
from layerops.batch.scoring import Scorer, ScoringModel
from layerops.batch.sources import Unit, open_source
from layerops.batch.task import (
    PartitionResult,
    Plan,
    check_names,
    score,
    score_on_worker,
    warm_worker,
    write,
)
from layerops.errors import DataError

if TYPE_CHECKING:
    from distributed import Client

DEFAULT_PARTITION_ROWS = 200_000
"""Rows per partition: ~30 MB of 20 numeric features in memory, a few seconds of a forest's time."""
IN_FLIGHT_PER_THREAD = 2


@dataclass(frozen=True)
class BatchProgress:
    """How far a run is, after each partition."""

    partitions: int
    """Partitions finished: scored now or found already written."""
    total: int | None
    """Partitions in the input (None for CSV until it has been read)."""
    rows: int
    """Rows checked by this run (scored and rejected)."""


@dataclass(frozen=True)
class BatchSummary:
    """What a batch run did."""

    model: str
    version: int
    engine: str
    output: str
    rows_scored: int
    rows_rejected: int
    partitions_written: int
    partitions_skipped: int
    rows_skipped: int
    """Rows in the partitions found already written (not checked again)."""
    seconds: float
    """From the first partition read to the last written (the model load and any cluster start excluded)."""

    @property
    def rows_per_second(self) -> float:
        """Rows checked (scored or rejected) per second by this run."""
        return (self.rows_scored + self.rows_rejected) / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        skipped = f" ({self.rows_skipped:,} rows)" if self.partitions_skipped else ""
        return (
            f"{self.model} v{self.version} ({self.engine}): {self.rows_scored:,} rows scored, "
            f"{self.rows_rejected:,} rejected; {self.partitions_written:,} partitions written, "
            f"{self.partitions_skipped:,} skipped{skipped}; {self.rows_per_second:,.0f} rows/s "
            f"in {self.seconds:.1f} s → {self.output}"
        )


ProgressCallback = Callable[[BatchProgress], None]


class _Tally:
    def __init__(self, total: int | None, progress: ProgressCallback | None) -> None:
        self.total = total
        self.progress = progress
        self.written = self.skipped = self.scored = self.rejected = self.rows_skipped = 0
        self.indices: list[int] = []
        self.earlier_scored = self.earlier_rejected = 0

    def add(self, result: PartitionResult) -> None:
        self.indices.append(result.index)
        self.written += 1
        self.scored += result.scored
        self.rejected += result.rejected
        self._report()

    def skip(self, written: Written) -> None:
        self.skipped += 1
        self.rows_skipped += written.scored + written.rejected
        self.earlier_scored += written.scored
        self.earlier_rejected += written.rejected
        self._report()

    def _report(self) -> None:
        if self.progress is not None:
            done = self.written + self.skipped
            self.progress(BatchProgress(done, self.total, self.scored + self.rejected))


class BatchJob:
    """A batch checked and ready: the input opened and its columns checked against the model, the
    output folder prepared (partitions already written found). Nothing is scored yet, so a bad
    input or output fails before a cluster is started."""

    def __init__(
        self,
        model: ScoringModel,
        source_uri: str,
        output_uri: str,
        *,
        partition_rows: int = DEFAULT_PARTITION_ROWS,
        keep: Sequence[str] | None = None,
        overwrite: bool = False,
    ) -> None:
        if partition_rows < 1:
            raise DataError(f"partition rows must be at least 1, not {partition_rows}")
        self.model = model
        self.source = open_source(source_uri)
        columns = self.source.check(model.checker, keep)
        features = model.metadata.feature_names()
        self._read = None if keep is None else list(dict.fromkeys([*keep, *features]))
        check_names(model.metadata, columns if keep is None else keep, self._read or columns, self.source.uri)
        self.folder = OutputFolder(output_uri)
        self.partition_rows = partition_rows
        self.manifest: dict[str, Any] = {
            "format": FORMAT,
            "model": model.name,
            "version": model.version,
            "engine": model.engine,
            "input": self.source.fingerprint(),
            "partition_rows": partition_rows,
            "keep": None if keep is None else list(keep),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "complete": False,
        }
        self.done = self.folder.prepare(self.manifest, overwrite=overwrite)
        self.plan = Plan(self.folder.location.url, None if keep is None else tuple(keep))

    def run(
        self,
        scorer: Scorer | None = None,
        *,
        client: Client | None = None,
        progress: ProgressCallback | None = None,
    ) -> BatchSummary:
        """Score every partition not yet written: with `scorer` here, or on `client`'s workers."""
        tally = _Tally(self.source.partition_count(self.partition_rows), progress)
        if client is not None:
            client.run(warm_worker, self.model)  # type: ignore[no-untyped-call]
        start = time.perf_counter()
        units = _pending(self.source.units(self.partition_rows, self._read), self.done, tally)
        if client is not None:
            _on_dask(client, self.model, units, self.plan, self.done, tally)
            self._check_written(tally.indices)
        else:
            partitions = _read_ahead(_partitions(units, self.done))
            _in_process(scorer or self.model.scorer(), self.model, partitions, self.plan, tally)
        seconds = time.perf_counter() - start
        self.folder.write_manifest(
            {
                **self.manifest,
                "complete": True,
                "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "partitions": tally.written + tally.skipped,
                "rows_scored": tally.scored + tally.earlier_scored,
                "rows_rejected": tally.rejected + tally.earlier_rejected,
            }
        )
        model = self.model
        return BatchSummary(
            model.name, model.version, model.engine, self.folder.uri, tally.scored, tally.rejected,
            tally.written, tally.skipped, tally.rows_skipped, seconds,
        )  # fmt: skip

    def _check_written(self, indices: list[int]) -> None:
        """Refuse parts the workers wrote where this process cannot see them: a local OUTPUT on
        workers of another machine lands on their disks (use s3:// or a shared folder)."""
        missing = sorted(set(indices) - self.folder.parts())
        if missing:
            raise DataError(
                f"the Dask workers wrote {len(missing)} partitions this process cannot find in "
                f"{self.folder.uri} (e.g. part-{missing[0]:05d}.parquet): a local OUTPUT must be a folder "
                "the workers share with this machine; use s3:// or a shared filesystem"
            )


def _pending(units: Iterable[Unit], done: dict[int, Written], tally: _Tally) -> Iterator[Unit]:
    """The units with a partition still to write (the others counted as skipped, never read)."""
    for unit in units:
        indices = [unit.index] if isinstance(unit, Partition) else unit.indices
        finished = [done[index] for index in indices if index in done]
        for written in finished:
            tally.skip(written)
        if len(finished) < len(indices):
            yield unit


def _partitions(units: Iterable[Unit], done: dict[int, Written]) -> Iterator[Partition]:
    """The partitions still to write, read (a Parquet run here, as a worker would)."""
    for unit in units:
        if isinstance(unit, Partition):
            yield unit
        else:
            yield from unit.partitions(skip=done)


def _read_ahead(partitions: Iterable[Partition]) -> Iterator[Partition]:
    """`partitions`, the next one read in a thread while the caller works on this one (pyarrow
    reads and decodes without the GIL)."""
    iterator = iter(partitions)
    with ThreadPoolExecutor(1, thread_name_prefix="layerops-batch-read") as reader:
        following = reader.submit(next, iterator, None)
        while (partition := following.result()) is not None:
            following = reader.submit(next, iterator, None)
            yield partition


def _in_process(
    scorer: Scorer, model: ScoringModel, partitions: Iterable[Partition], plan: Plan, tally: _Tally
) -> None:
    """Check and score here, each partition written in a thread while the next one is scored:
    Parquet encoding and ONNX Runtime both run without the GIL, so writing overlaps scoring."""
    with ThreadPoolExecutor(1, thread_name_prefix="layerops-batch-write") as writer:
        writing: Future[PartitionResult] | None = None
        for partition in partitions:
            scored = score(scorer, model, partition, plan.keep)
            if writing is not None:
                tally.add(writing.result())
            writing = writer.submit(write, scored, plan)
        if writing is not None:
            tally.add(writing.result())


def _on_dask(
    client: Client,
    model: ScoringModel,
    units: Iterable[Unit],
    plan: Plan,
    done: dict[int, Written],
    tally: _Tally,
) -> None:
    """Each unit scored as a task: a CSV partition scattered to a worker, a Parquet run described
    (the worker reads it); results collected as they finish, `window` tasks in flight at most."""
    from distributed import as_completed

    shared = client.scatter(model, broadcast=True, hash=False)  # type: ignore[no-untyped-call]
    threads = client.nthreads()  # type: ignore[no-untyped-call]
    window = IN_FLIGHT_PER_THREAD * max(1, sum(threads.values()))
    running = as_completed()  # type: ignore[no-untyped-call]
    submitted = []
    try:
        for unit in units:
            rows: Any = unit
            skip = frozenset(done).intersection(unit.indices) if isinstance(unit, ParquetRun) else frozenset()
            if isinstance(unit, Partition):  # a CSV's rows, read here: sent to a worker
                rows = client.scatter(unit, hash=False)  # type: ignore[no-untyped-call]
            future = client.submit(score_on_worker, shared, rows, plan, skip, pure=False)
            submitted.append(future)
            running.add(future)  # type: ignore[no-untyped-call]
            while running.count() >= window:  # type: ignore[no-untyped-call]
                _collect(next(running), tally)
        for future in running:
            _collect(future, tally)
    finally:
        client.cancel([future for future in submitted if not future.done()])  # type: ignore[no-untyped-call]


def _collect(future: Any, tally: _Tally) -> None:
    for result in future.result():
        tally.add(result)
