"""A partition: consecutive rows of one input file, the unit that is checked, scored and written.

Partitions have exactly `partition_rows` rows (the last of a file may be shorter), never span
two files, and are numbered across the whole input, files in sorted order: the same input and
option always give the same partitions, which is what lets a rerun skip those already written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Partition:
    """Consecutive rows of one input file."""

    index: int
    """Its number across the whole input: the output's `part-{index:05d}.parquet`."""
    file: str
    first_row: int
    """The input row number of its first row (0-based across the input, header excluded)."""
    table: pa.Table


def rechunk(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Tables of exactly `rows` rows (the last one shorter) from batches of any size, zero-copy."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        while batch.num_rows:
            take = min(rows - count, batch.num_rows)
            pending.append(batch.slice(0, take))
            count += take
            batch = batch.slice(take)
            if count == rows:
                yield pa.Table.from_batches(pending)
                pending, count = [], 0
    if pending:
        yield pa.Table.from_batches(pending)
