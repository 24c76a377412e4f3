"""The Parquet store's file helpers: folder names, open files, day splits, time filters, concat."""

from __future__ import annotations

import os
import secrets
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from layerops.monitoring.store import LOG_TYPES, SinkError

_SAFE = frozenset(string.ascii_letters + string.digits + "._-")


def model_folder(model: str) -> str:
    """The folder name of `model`: characters outside `[A-Za-z0-9._-]` percent-encoded."""
    if model in {"", ".", ".."}:
        raise SinkError(f"bad model name {model!r} for the prediction log: it cannot be a folder name")
    return "".join(c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode()) for c in model)


def model_of_folder(folder: str) -> str:
    """The model name a folder name encodes (the inverse of `model_folder`)."""
    return unquote(folder)


@dataclass(eq=False)
class OpenFile:
    """One file being written as `partial`, renamed to `final` when closed; `pending` batches are
    buffered until they make a row group."""

    partial: Path
    final: Path
    sink: pa.NativeFile
    writer: pq.ParquetWriter
    opened: float
    rows: int = 0
    request_ids: set[str] = field(default_factory=set)
    pending: list[pa.Table] = field(default_factory=list)
    pending_rows: int = 0
    pending_bytes: int = 0

    def write_pending(self) -> None:
        """Write the buffered batches as one row group."""
        if self.pending:
            self.writer.write_table(pa.concat_tables(self.pending))
            self.pending, self.pending_rows, self.pending_bytes = [], 0, 0


def file_stem() -> str:
    return f"part-{datetime.now(UTC):%Y%m%dT%H%M%S}-{os.getpid()}-{secrets.token_hex(4)}"


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns worth dictionary encoding: strings (labels, categories, ids); floats rarely repeat."""
    return [f.name for f in schema if pa.types.is_string(f.type)]


def split_by_day(table: pa.Table) -> Iterator[tuple[date, pa.Table]]:
    """`table`'s rows grouped by the UTC day of their `time`."""
    days = pc.cast(table["time"], pa.date32())
    bounds = pc.min_max(days)
    first, last = bounds["min"].as_py(), bounds["max"].as_py()
    if first == last:
        yield first, table
        return
    for day in pc.unique(days).to_pylist():
        yield day, table.filter(pc.equal(days, pa.scalar(day, pa.date32())))


def time_filter(since: datetime | None, until: datetime | None) -> pc.Expression | None:
    moment = pc.field("time")
    bounds = [moment >= pa.scalar(since, LOG_TYPES["time"])] if since is not None else []
    if until is not None:
        bounds.append(moment < pa.scalar(until, LOG_TYPES["time"]))
    if not bounds:
        return None
    return bounds[0] if len(bounds) == 1 else bounds[0] & bounds[1]


def concat(tables: list[pa.Table]) -> pa.Table:
    """One table of `tables` with the union of their columns (absent → null); a column whose type
    differs between files (a feature that changed kind) becomes a string column."""
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        types: dict[str, set[pa.DataType]] = {}
        for table in tables:
            for item in table.schema:
                types.setdefault(item.name, set()).add(item.type)
        mixed = {name for name, kinds in types.items() if len(kinds - {pa.null()}) > 1}
        fixed = [
            t.cast(
                pa.schema([pa.field(f.name, pa.string() if f.name in mixed else f.type) for f in t.schema])
            )
            for t in tables
        ]
        return pa.concat_tables(fixed, promote_options="default")
