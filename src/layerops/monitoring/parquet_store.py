"""The prediction log as Parquet files, one folder per model, partitioned by UTC day.

Layout (hive-partitioned, readable by pandas, `pyarrow.dataset`, DuckDB and Spark)::

    <root>/<model>/date=YYYY-MM-DD/part-<yyyymmddTHHMMSS>-<pid>-<8 hex>.parquet
    <root>/<model>/_feedback/part-<yyyymmddTHHMMSS>-<pid>-<8 hex>.parquet

Each process keeps one open file per (model, day, schema), buffering batches into row groups of
about `ROW_GROUP_ROWS` rows. While open, a file is named `_part-….parquet.inprogress`: readers (and
tools globbing `*.parquet`, which also skip names starting with `_`) ignore it, and it becomes
`part-….parquet` by an atomic rename when it is closed: at `rotate_bytes`, after `rotate_seconds`,
at `flush`/`close`, and a new schema or UTC day opens another file (a batch whose rows span
midnight is split by its `time`). A killed writer therefore loses its open files' rows but never
leaves a half-written file where readers look; readers skip (with a warning) any final file that
is unreadable anyway. Feedback lives under `_feedback` so that reading
`<root>/<model>` as a dataset yields predictions only.

Model names become folder names with every character outside `[A-Za-z0-9._-]` percent-encoded.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Collection, Iterator
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from layerops.monitoring._parquet_files import (
    OpenFile,
    concat,
    dictionary_columns,
    file_stem,
    model_folder,
    model_of_folder,
    split_by_day,
    time_filter,
)
from layerops.monitoring.records import FEEDBACK_COLUMNS, Window
from layerops.monitoring.store import (
    SinkError,
    as_utc,
    check_feedback_columns,
    empty_feedback_frame,
    empty_log_frame,
    normalise_batch,
    ordered_columns,
    to_frame,
)

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
FEEDBACK_FOLDER = "_feedback"
_COMPRESSION = "snappy"
ROW_GROUP_ROWS = 65_536
"""Batches are buffered into row groups of about this many rows: 4,096-row groups read ~1.4x slower.
Buffering costs no durability: an open file is unreadable (no footer) until it is closed anyway."""


_Key = tuple[str, date, pa.Schema]


class ParquetStore:
    """A `LogStore` writing Parquet files under `root` (see the module docstring for the layout)."""

    def __init__(self, root: Path, *, rotate_bytes: int = 64 * MIB, rotate_seconds: float = 60.0) -> None:
        self.root = Path(root)
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self._open: dict[_Key, OpenFile] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._warned: set[Path] = set()

    def __repr__(self) -> str:
        return f"ParquetStore({str(self.root)!r})"

    # -- writing ---------------------------------------------------------------------------------

    def write(self, model: str, batch: pa.Table) -> None:
        """Append `batch` to `model`'s open file of each UTC day its rows fall on.

        On `SinkError` the file that failed is abandoned (renamed `_….parquet.failed`, ignored by
        readers, its earlier rows lost and counted in an error log), so no part of the batch
        becomes visible and the caller may retry it — except for a batch spanning midnight whose
        first day was written before the second failed.
        """
        folder = model_folder(model)
        table = normalise_batch(batch)
        if table.num_rows == 0:
            return
        with self._lock:
            if self._closed:
                raise SinkError(f"the prediction log at {self.root} is closed")
            self._rotate(due_only=True)
            for day, part in split_by_day(table):
                self._append((folder, day, part.schema), part)

    def rotate_due(self) -> None:
        """Close the files older than `rotate_seconds` (for a writer with nothing to write)."""
        with self._lock:
            self._rotate(due_only=True)

    def flush(self) -> None:
        """Close every open file, making all rows written so far readable by other processes.

        A file that fails to close is abandoned like a failed `write` (its rows are lost and
        counted in an error log) and `SinkError` is raised once every file was tried.
        """
        with self._lock:
            self._rotate(due_only=False)

    def close(self) -> None:
        """Flush, then refuse further writes; idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._rotate(due_only=False)

    def _append(self, key: _Key, part: pa.Table) -> None:
        handle = self._open.get(key)
        if handle is None:
            handle = self._open[key] = self._new_file(key)
        handle.pending.append(part)
        handle.pending_rows += part.num_rows
        handle.pending_bytes += part.nbytes
        if handle.pending_rows >= ROW_GROUP_ROWS:
            try:
                handle.write_pending()
            except (OSError, pa.ArrowException) as exc:
                self._abandon(key, handle)
                raise SinkError(f"cannot write the prediction log file {handle.partial}: {exc}") from exc
        handle.rows += part.num_rows
        handle.request_ids.update(str(i) for i in pc.unique(part["request_id"]).to_pylist())
        # Buffered rows count uncompressed, so a file may end somewhat smaller than rotate_bytes.
        if handle.sink.tell() + handle.pending_bytes >= self.rotate_bytes:
            self._finish(key)

    def _new_file(self, key: _Key) -> OpenFile:
        folder, day, schema = key
        directory = self.root / folder / f"date={day.isoformat()}"
        stem = file_stem()
        partial = directory / f"_{stem}.parquet.inprogress"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            sink = pa.OSFile(str(partial), "wb")
        except OSError as exc:
            raise SinkError(f"cannot create a prediction log file in {directory}: {exc}") from exc
        try:
            writer = pq.ParquetWriter(
                sink, schema, compression=_COMPRESSION, use_dictionary=dictionary_columns(schema)
            )
        except (OSError, pa.ArrowException) as exc:
            sink.close()
            partial.unlink(missing_ok=True)
            raise SinkError(f"cannot start the prediction log file {partial}: {exc}") from exc
        return OpenFile(partial, directory / f"{stem}.parquet", sink, writer, time.monotonic())

    def _rotate(self, *, due_only: bool) -> None:
        """Close open files (only those past `rotate_seconds` when `due_only`); raise the first failure."""
        now = time.monotonic()
        failures: list[SinkError] = []
        for key, handle in list(self._open.items()):
            if not due_only or now - handle.opened >= self.rotate_seconds:
                try:
                    self._finish(key)
                except SinkError as exc:
                    failures.append(exc)
        if failures:
            raise failures[0]

    def _finish(self, key: _Key) -> None:
        handle = self._open[key]
        try:
            handle.write_pending()
            handle.writer.close()
            handle.sink.close()
            os.replace(handle.partial, handle.final)
        except (OSError, pa.ArrowException) as exc:
            self._abandon(key, handle)
            raise SinkError(f"cannot close the prediction log file {handle.partial}: {exc}") from exc
        del self._open[key]

    def _abandon(self, key: _Key, handle: OpenFile) -> None:
        self._open.pop(key, None)
        for release in (handle.writer.close, handle.sink.close):
            try:
                release()
            except (OSError, pa.ArrowException):
                pass
        failed = handle.partial.with_suffix(".failed")
        try:
            os.replace(handle.partial, failed)
        except OSError:
            failed = handle.partial
        logger.error(
            "prediction log file %s abandoned after a failure: %d logged rows lost", failed, handle.rows
        )

    # -- reading ---------------------------------------------------------------------------------

    def read(self, model: str, window: Window) -> pd.DataFrame:
        """`model`'s rows in `window` from its closed files, ordered by time; unreadable files are
        skipped with a warning. Rows still in this process's open files are not included: `flush`."""
        folder = model_folder(model)
        since, until = as_utc(window.since), as_utc(window.until)
        if window.last is not None:
            floor = self._last_floor(folder, window.last, since, until)
            if floor is not None:
                since = floor if since is None else max(since, floor)
        tables = []
        for _, files in self._days(folder, since, until):
            for path in files:
                table = self._read_file(path, since=since, until=until)
                if table is not None and table.num_rows:
                    tables.append(table)
        if not tables:
            return empty_log_frame()
        # Files are mostly in time order already: sort (a costly gather) only when they are not.
        tables.sort(key=lambda t: t["time"][0].value)
        table = concat(tables)
        order = pc.sort_indices(table["time"])
        if not np.array_equal(order.to_numpy(), np.arange(len(order))):
            table = table.take(order)
        if window.last is not None and table.num_rows > window.last:
            table = table.slice(table.num_rows - window.last)
        return to_frame(table.select(ordered_columns(table.column_names)))

    def _last_floor(
        self, folder: str, last: int, since: datetime | None, until: datetime | None
    ) -> datetime | None:
        """A time at or before the `last`-th newest row in [since, until), or None when unknown.

        From the row groups' `time` statistics alone (no data read): among the row groups wholly
        inside the window, the newest (by max) holding `last` rows all start at or after it, so the
        `last` newest rows do too. Reading from there skips every older row group.
        """
        groups: list[tuple[datetime, datetime, int]] = []
        for _, files in self._days(folder, since, until):
            for path in files:
                groups.extend(
                    (low, high, count)
                    for low, high, count in self._time_ranges(path)
                    if (since is None or low >= since) and (until is None or high < until)
                )
            # Days never overlap in time, so older days cannot hold any of the last rows.
            if sum(count for _, _, count in groups) >= last:
                break
        groups.sort(key=lambda group: group[1], reverse=True)
        rows = 0
        floor: datetime | None = None
        for low, _, count in groups:
            floor = low if floor is None else min(floor, low)
            rows += count
            if rows >= last:
                return floor
        return None

    def _time_ranges(self, path: Path) -> list[tuple[datetime, datetime, int]]:
        """(min, max, rows) of `time` for each row group of `path` with statistics (footer only)."""
        try:
            metadata = pq.read_metadata(path)
            column = metadata.schema.names.index("time")
        except (OSError, ValueError, pa.ArrowException):
            return []  # unreadable: `_read_file` warns when the read comes to it
        ranges = []
        for index in range(metadata.num_row_groups):
            group = metadata.row_group(index)
            stats = group.column(column).statistics
            if stats is not None and stats.has_min_max and isinstance(stats.min, datetime):
                ranges.append((as_utc(stats.min), as_utc(stats.max), group.num_rows))
        return ranges

    def models(self) -> list[str]:
        """The models with a closed log file, or an open one in this process."""
        found = set()
        if self.root.is_dir():
            for entry in self.root.iterdir():
                if entry.is_dir() and next(entry.glob("date=*/part-*.parquet"), None) is not None:
                    found.add(model_of_folder(entry.name))
        with self._lock:
            found.update(model_of_folder(folder) for folder, _, _ in self._open)
        return sorted(found)

    def find_requests(self, model: str, request_ids: Collection[str]) -> set[str]:
        """The ids among `request_ids` with logged rows of `model`, in closed files or this process's
        open ones (so feedback right after a prediction finds it)."""
        folder = model_folder(model)
        wanted = {str(i) for i in request_ids}
        found: set[str] = set()
        # Open files first: one closed in between is then seen by the listing below.
        with self._lock:
            for key, handle in self._open.items():
                if key[0] == folder:
                    found |= wanted & handle.request_ids
        for _, files in self._days(folder, None, None):
            for path in files:
                if found >= wanted:
                    return found
                table = self._read_file(path, columns=["request_id"])
                if table is not None:
                    ids = table["request_id"]
                    value_set = pa.array(sorted(wanted - found), pa.string())
                    found.update(pc.unique(ids.filter(pc.is_in(ids, value_set=value_set))).to_pylist())
        return found

    def _days(
        self, folder: str, since: datetime | None, until: datetime | None
    ) -> Iterator[tuple[date, list[Path]]]:
        """The `date=` partitions of `folder` that may hold rows in [since, until), newest first."""
        directory = self.root / folder
        if not directory.is_dir():
            return
        days: list[tuple[date, Path]] = []
        for entry in directory.glob("date=*"):
            try:
                day = date.fromisoformat(entry.name.removeprefix("date="))
            except ValueError:
                continue
            if (since is None or day >= since.date()) and (until is None or day <= until.date()):
                days.append((day, entry))
        for day, entry in sorted(days, reverse=True):
            yield day, sorted(entry.glob("part-*.parquet"))

    def _read_file(
        self,
        path: Path,
        columns: list[str] | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> pa.Table | None:
        """`path`'s rows in [since, until) (row groups outside skipped by their statistics), or None
        with a warning (once per file) when it cannot be read."""
        try:
            return pq.read_table(path, columns=columns, filters=time_filter(since, until))
        except (OSError, pa.ArrowException) as exc:
            if path not in self._warned:
                self._warned.add(path)
                logger.warning("skipping unreadable prediction log file %s: %s", path, exc)
            return None

    # -- feedback --------------------------------------------------------------------------------

    def write_feedback(self, model: str, feedback: pd.DataFrame) -> None:
        """Append `feedback` as one new file of `model` (written aside, then renamed into place)."""
        check_feedback_columns(model, feedback)
        if feedback.empty:
            return
        table = normalise_batch(pa.Table.from_pandas(feedback[list(FEEDBACK_COLUMNS)], preserve_index=False))
        directory = self.root / model_folder(model) / FEEDBACK_FOLDER
        stem = file_stem()
        partial = directory / f"_{stem}.parquet.inprogress"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, partial, compression=_COMPRESSION)
            os.replace(partial, directory / f"{stem}.parquet")
        except (OSError, pa.ArrowException) as exc:
            partial.unlink(missing_ok=True)
            raise SinkError(f"cannot write feedback for {model!r} in {directory}: {exc}") from exc

    def read_feedback(self, model: str) -> pd.DataFrame:
        """Every feedback row of `model`, ordered by time; unreadable files are skipped with a warning."""
        directory = self.root / model_folder(model) / FEEDBACK_FOLDER
        files = sorted(directory.glob("part-*.parquet")) if directory.is_dir() else []
        tables = [t for t in map(self._read_file, files) if t is not None]
        if not tables:
            return empty_feedback_frame()
        table = concat(tables)
        return to_frame(table.take(pc.sort_indices(table["time"])))
