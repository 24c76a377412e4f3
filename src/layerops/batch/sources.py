"""Batch input: a CSV or Parquet file, or a folder of them (a partitioned dataset), cut into
partitions (see `partition.py`): memory follows the partition, never the file.

A CSV is streamed by pyarrow's reader in 512 KiB blocks (it reads about 36 ahead) and cut into
partitions as it is read, here: only reading a CSV in order tells where its rows are. A Parquet
file's partitions are planned from its footer and read where they are scored (`_parquet.py`).
Each partition carries the input row number of its first row (0-based across the input, header
excluded), which the output and the rejects keep as `row_number`.

Every CSV column is read as text and the model's numbers are parsed by the row checks, so a bad
value rejects one row instead of stopping the reader, and the other columns are copied as
written (a CSV has no types; guessing them block by block can change between blocks).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from layerops.batch._parquet import ParquetRun, plan_runs
from layerops.batch._storage import Location, describe, resolve
from layerops.batch.partition import Partition, rechunk
from layerops.batch.validation import RowChecker
from layerops.errors import DataError

Format = Literal["csv", "parquet"]
_SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".csv.bz2": "csv",
    ".csv.zst": "csv",
    ".parquet": "parquet",
    ".parq": "parquet",
    ".pq": "parquet",
}
_CSV_BLOCK_BYTES = 512 << 10


@dataclass(frozen=True)
class InputFile:
    """One file of the input."""

    location: Location
    name: str
    """Its path relative to the input (its file name for a single file)."""
    size: int
    modified_ns: int | None


Unit = Partition | ParquetRun
"""What one task scores: a CSV partition (its rows, read here) or a Parquet run (read there)."""


class Source:
    """An input's files, their format and their partitions."""

    def __init__(self, location: Location, files: list[InputFile], format: Format) -> None:
        self.location = location
        self.uri = location.uri
        self.files = files
        self.format: Format = format
        self._headers: dict[str, list[str]] = {}
        self._footers: dict[str, pq.FileMetaData] = {}

    def schema(self, file: InputFile) -> pa.Schema:
        """The file's columns (all text for a CSV)."""
        try:
            if self.format == "csv":
                return pa.schema([(name, pa.string()) for name in self._header(file)])
            return self._footer(file).schema.to_arrow_schema()
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read {file.location.uri}: {describe(exc)}") from exc

    def check(self, checker: RowChecker, keep: Sequence[str] | None) -> list[str]:
        """Refuse an input no row of which could be scored; return the first file's columns."""
        first: list[str] = []
        for file in self.files:
            schema = self.schema(file)
            first = first or schema.names
            checker.check_schema(schema, file.location.uri)
            absent = [name for name in keep or () if name not in schema.names]
            if absent:
                raise DataError(f"{file.location.uri}: --keep names columns it lacks: {', '.join(absent)}")
        return first

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this input for a resumed run: its files, their sizes and times."""
        return {
            "uri": self.location.url,
            "format": self.format,
            "files": [[f.name, f.size, f.modified_ns] for f in self.files],
        }

    def partition_count(self, rows: int) -> int | None:
        """How many partitions the input makes (None for CSV: only reading it tells)."""
        if self.format == "csv":
            return None
        return sum(-(-int(self._footer(file).num_rows) // rows) for file in self.files)

    def units(self, rows: int, columns: Sequence[str] | None) -> Iterator[Unit]:
        """Every partition in order, as tasks: CSV partitions read, Parquet runs planned.

        `columns`: only these (where a file has them), None: all.
        """
        if self.format == "csv":
            yield from self._csv_partitions(rows, columns)
            return
        index = first_row = 0
        wanted = None if columns is None else tuple(columns)
        for file in self.files:
            footer = self._footer(file)
            url, name = file.location.url, file.name
            runs = plan_runs(url, name, footer, rows, first_index=index, first_row=first_row, columns=wanted)
            yield from runs
            index += sum(len(run.sizes) for run in runs)
            first_row += footer.num_rows

    def _csv_partitions(self, rows: int, columns: Sequence[str] | None) -> Iterator[Partition]:
        index = first_row = 0
        for file in self.files:
            stream = file.location.fs.open_input_stream(file.location.path, compression="detect")
            try:
                with stream, self._csv(stream, file, columns) as reader:
                    for table in rechunk(reader, rows):
                        yield Partition(index, file.name, first_row, table)
                        index += 1
                        first_row += table.num_rows
            except (OSError, pa.ArrowException) as exc:
                raise DataError(f"cannot read {file.location.uri}: {describe(exc)}") from exc

    def _footer(self, file: InputFile) -> pq.FileMetaData:
        if file.name not in self._footers:
            try:
                with file.location.fs.open_input_file(file.location.path) as handle:
                    self._footers[file.name] = pq.read_metadata(handle)
            except (OSError, pa.ArrowException) as exc:
                raise DataError(f"cannot read {file.location.uri}: {describe(exc)}") from exc
        return self._footers[file.name]

    def _csv(self, stream: Any, file: InputFile, columns: Sequence[str] | None) -> pacsv.CSVStreamingReader:
        read = pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES)
        names = self._header(file)
        convert = pacsv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            strings_can_be_null=True,
            include_columns=[name for name in names if columns is None or name in set(columns)],
        )
        return pacsv.open_csv(stream, read_options=read, convert_options=convert)

    def _header(self, file: InputFile) -> list[str]:
        if file.name not in self._headers:
            stream = file.location.fs.open_input_stream(file.location.path, compression="detect")
            read = pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES)
            with stream, pacsv.open_csv(stream, read_options=read) as reader:
                self._headers[file.name] = list(reader.schema.names)
        return self._headers[file.name]


def open_source(uri: str) -> Source:
    """The input at `uri` (a file or a folder of files); a `DataError` when there is none."""
    location = resolve(uri)
    info = location.info()
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"{uri}: no such file or folder")
    if info.type == pafs.FileType.File:
        format = _format(info.base_name)
        if format is None:
            raise DataError(f"{uri}: cannot tell its format; name it .csv or .parquet")
        return Source(location, [InputFile(location, info.base_name, info.size or 0, info.mtime_ns)], format)
    return _folder(location)


def _folder(location: Location) -> Source:
    try:
        found = location.fs.get_file_info(pafs.FileSelector(location.path, recursive=True))
    except OSError as exc:
        raise DataError(f"cannot list {location.uri}: {describe(exc)}") from exc
    files: dict[str, tuple[pafs.FileInfo, Format]] = {}
    root = location.path.rstrip("/") + "/"
    for info in found:
        name = info.path.removeprefix(root)
        format = _format(info.base_name)
        hidden = any(part.startswith(("_", ".")) for part in name.split("/"))
        if info.type == pafs.FileType.File and format is not None and not hidden:
            files[name] = (info, format)
    formats = {format for _, format in files.values()}
    if not files:
        raise DataError(f"{location.uri}: no .csv or .parquet files in this folder")
    if len(formats) > 1:
        raise DataError(f"{location.uri}: holds both CSV and Parquet files; score one format at a time")
    inputs = [
        InputFile(location.child(name), name, info.size or 0, info.mtime_ns)
        for name, (info, _) in sorted(files.items())
    ]
    return Source(location, inputs, formats.pop())


def _format(name: str) -> Format | None:
    lower = name.lower()
    return next((format for suffix, format in _SUFFIXES.items() if lower.endswith(suffix)), None)
