"""Partitions: planned from Parquet footers (runs where row groups are larger than a partition),
cut from a CSV as it is read; the same rows, numbered the same, whichever way they are read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from layerops.batch._parquet import ParquetRun
from layerops.batch.partition import Partition
from layerops.batch.sources import open_source


def _write(path: Path, first: int, groups: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, pa.schema([("id", pa.int64())])) as writer:
        for size in groups:
            writer.write_table(pa.table({"id": np.arange(first, first + size)}))
            first += size


@pytest.mark.parametrize(
    ("groups", "rows", "runs"),
    [
        ([400, 400, 200], 400, [(400,), (400,), (200,)]),  # aligned: a run per partition
        ([300, 300, 300, 100], 400, [(400, 400, 200)]),  # every boundary inside a row group
        ([500, 500], 250, [(250, 250), (250, 250)]),  # two partitions in each row group
        ([100, 100, 100], 1000, [(300,)]),  # a partition of several row groups
    ],
)
def test_parquet_partitions_are_planned_from_the_footer_and_read_in_runs(
    tmp_path: Path, groups: list[int], rows: int, runs: list[tuple[int, ...]]
) -> None:
    _write(tmp_path / "in" / "a.parquet", 0, groups)
    _write(tmp_path / "in" / "b.parquet", sum(groups), [7])
    source = open_source(str(tmp_path / "in"))
    units = list(source.units(rows, None))
    assert all(isinstance(unit, ParquetRun) for unit in units)
    assert [unit.sizes for unit in units] == [*runs, (7,)]
    assert source.partition_count(rows) == sum(len(run) for run in runs) + 1
    partitions = [p for unit in units if isinstance(unit, ParquetRun) for p in unit.partitions()]
    assert [p.index for p in partitions] == list(range(len(partitions)))
    assert [p.file for p in partitions][-1] == "b.parquet"
    for partition in partitions:  # each holds the input rows its number says, nothing read twice
        ids = partition.table.column("id").to_pylist()
        assert ids == list(range(partition.first_row, partition.first_row + len(ids)))
    assert sum(p.table.num_rows for p in partitions) == sum(groups) + 7
    last = units[len(runs) - 1]
    assert isinstance(last, ParquetRun)
    skipped = [p.index for p in last.partitions(skip={last.indices[0]})]
    assert skipped == list(last.indices[1:])


def test_a_csv_is_cut_into_the_same_partitions_as_it_is_read(tmp_path: Path) -> None:
    lines = "\n".join(f"{i},{'x' * (i % 50)}" for i in range(20_000))
    (tmp_path / "in.csv").write_text(f"id,note\n{lines}\n")  # ~0.5 MiB: a few reader blocks
    units = list(open_source(str(tmp_path / "in.csv")).units(3_000, None))
    assert all(isinstance(unit, Partition) for unit in units)
    assert [unit.table.num_rows for unit in units if isinstance(unit, Partition)] == [3_000] * 6 + [2_000]
    for unit in units:
        assert isinstance(unit, Partition)
        assert unit.table.column("id").to_pylist() == [
            str(i) for i in range(unit.first_row, unit.first_row + unit.table.num_rows)
        ]
