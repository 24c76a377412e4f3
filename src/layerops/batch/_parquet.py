"""Parquet partitions, planned from the footers and read where they are scored.

A Parquet file's footer gives the rows of each row group, so its partitions are known without
reading them: a `ParquetRun` names the file, the row groups and the partitions they hold, and
whoever scores it (this process or a Dask worker) reads just those row groups, streamed in
batches (`buffer_size`: never a whole column chunk at once). Nothing travels but the run's
description, and a rerun skips a finished run without reading it.

A run is one partition where partitions and row groups align or row groups are smaller; where a
row group is larger than a partition, the partitions inside it form one run read in one pass
(reading a partition from the middle of a row group would decode the rows before it each time).
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from layerops.batch._storage import describe, resolve
from layerops.batch.partition import Partition, rechunk
from layerops.errors import DataError

_BATCH_ROWS = 65_536
_BUFFER_BYTES = 4 << 20


@dataclass(frozen=True)
class ParquetRun:
    """Consecutive partitions of one Parquet file and the row groups that hold them."""

    url: str
    """The file, as any process resolves it (absolute path or `s3://` URL)."""
    name: str
    """Its path relative to the input (`Partition.file`)."""
    row_groups: tuple[int, ...]
    first_index: int
    first_row: int
    """The input row number of the run's first row."""
    sizes: tuple[int, ...]
    """Rows of each of its partitions."""
    columns: tuple[str, ...] | None

    @property
    def indices(self) -> range:
        """The numbers of its partitions."""
        return range(self.first_index, self.first_index + len(self.sizes))

    def partitions(self, skip: Collection[int] = ()) -> Iterator[Partition]:
        """Its partitions, read now, in order; those in `skip` are read past, not returned."""
        location = resolve(self.url)
        try:
            with location.fs.open_input_file(location.path) as handle:
                parquet = pq.ParquetFile(handle, buffer_size=_BUFFER_BYTES)
                names = parquet.schema_arrow.names
                wanted = names if self.columns is None else [n for n in names if n in set(self.columns)]
                batches = parquet.iter_batches(_BATCH_ROWS, row_groups=list(self.row_groups), columns=wanted)
                first_row = self.first_row
                for index, table in zip(self.indices, rechunk(batches, self.sizes[0]), strict=True):
                    if index not in skip:
                        yield Partition(index, self.name, first_row, table)
                    first_row += table.num_rows
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise DataError(f"cannot read {location.uri}: {describe(exc)}") from exc


def plan_runs(
    url: str,
    name: str,
    metadata: pq.FileMetaData,
    rows: int,
    *,
    first_index: int,
    first_row: int,
    columns: tuple[str, ...] | None,
) -> list[ParquetRun]:
    """The runs of one file, its partitions numbered from `first_index`, rows from `first_row`."""
    group_rows = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    starts = [0]
    for size in group_rows:
        starts.append(starts[-1] + size)
    boundaries = set(starts)
    total = starts[-1]
    count = -(-total // rows)
    runs: list[ParquetRun] = []
    partition = 0
    while partition < count:
        first = partition
        # Extend the run while the next partition starts inside a row group this one reads.
        while partition + 1 < count and (partition + 1) * rows not in boundaries:
            partition += 1
        start, stop = first * rows, min((partition + 1) * rows, total)
        groups = range(bisect.bisect_right(starts, start) - 1, bisect.bisect_left(starts, stop))
        sizes = tuple(min(rows, total - p * rows) for p in range(first, partition + 1))
        run = ParquetRun(url, name, tuple(groups), first_index + first, first_row + start, sizes, columns)
        runs.append(run)
        partition += 1
    return runs
