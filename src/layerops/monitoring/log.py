"""The prediction log: a bounded in-memory queue on the request path, a background writer off it.

`PredictionLog.record` is what the server calls for every answered request, on the event loop: it
decides sampling, counts, and appends a reference to the request's arrays (no copy, no
conversion) to a bounded queue. A writer thread takes batches off the queue, builds one
`pyarrow.Table` per model from them (the layout of `records.py`) and hands it to the store.

Nothing blocks a request: a full queue drops the request's rows and counts them; a store that
fails is retried with exponential back-off while requests keep queueing (up to the cap, then they
are dropped and counted). Memory stays bounded by `capacity_rows` queued rows plus the one batch
being retried. `close` flushes what is queued (retrying for up to `close_timeout` seconds) before
the process exits.

The writer also keeps the most recent rows of each model version in memory (`recent`), so the
server's drift checks read neither the disk nor the database, and go on while the store is down.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from layerops.monitoring.entries import Entry, build_table
from layerops.monitoring.store import LogStore

log = logging.getLogger("layerops.monitoring.log")


@dataclass
class LogStats:
    """Counters since start (monotonic) and the rows queued now."""

    queued_rows: int = 0
    written_rows: int = 0
    written_batches: int = 0
    failed_batches: int = 0
    """Write attempts the store refused (each retry counts)."""
    dropped_rows: dict[str, int] = field(default_factory=dict)
    """Model → rows dropped (queue full, or unwritten at close)."""
    sampled_out_rows: int = 0


@dataclass(frozen=True)
class LogSettings:
    """How the log queues, batches, retries and samples."""

    capacity_rows: int = 65_536
    """Most rows queued; beyond, new rows are dropped and counted."""
    batch_rows: int = 4096
    """The writer writes when this many rows are queued, or every `flush_seconds`."""
    flush_seconds: float = 0.25
    """The writer wakes this often: small batches hold the GIL for short moments (p99)."""
    close_timeout: float = 10.0
    """How long `close` keeps retrying a failing store before it gives up (and counts the drop)."""
    max_backoff_seconds: float = 5.0
    sample_rate: float = 1.0
    """Share of requests logged (by a hash of the request id, so the same id is always in or out)."""
    sample_rates: Mapping[str, float] = field(default_factory=dict)
    """Per-model overrides of `sample_rate`."""
    recent_rows: int = 10_000
    """Rows of each model version kept in memory for the server's drift checks (0: none)."""
    readable_seconds: float = 60.0
    """The writer makes what it wrote readable by other processes at least this often (an idle
    server's last Parquet file is closed too)."""

    def rate(self, model: str) -> float:
        """The sampling rate of `model`."""
        return self.sample_rates.get(model, self.sample_rate)


class PredictionLog:
    """A bounded queue of answered requests, written to a `LogStore` by one background thread."""

    def __init__(self, store: LogStore, settings: LogSettings | None = None) -> None:
        self.store = store
        self.settings = settings or LogSettings()
        self._queue: deque[Entry] = deque()
        self._lock = threading.Lock()
        self._queued = 0
        self._stats = LogStats()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._recent: dict[tuple[str, int], deque[pa.Table]] = {}
        self._recent_rows: dict[tuple[str, int], int] = {}
        self._busy = False  # the writer holds entries taken off the queue, not yet written
        self._thread: threading.Thread | None = None  # started by the first record

    # -- the request path (event loop) --------------------------------------------------------

    def record(self, entry: Entry) -> bool:
        """Queue `entry` unless sampled out or the queue is full (then count it); never blocks."""
        rate = self.settings.rate(entry.model)
        if rate < 1.0 and _sample_point(entry.request_id) >= rate:
            with self._lock:
                self._stats.sampled_out_rows += entry.rows
            return False
        with self._lock:
            if self._stopping.is_set() or self._queued + entry.rows > self.settings.capacity_rows:
                dropped = self._stats.dropped_rows
                dropped[entry.model] = dropped.get(entry.model, 0) + entry.rows
                return False
            self._queue.append(entry)
            self._queued += entry.rows
            full = self._queued >= self.settings.batch_rows
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="layerops-prediction-log", daemon=True)
                self._thread.start()
        if full:
            self._wake.set()
        return True

    def stats(self) -> LogStats:
        """A copy of the counters."""
        with self._lock:
            return LogStats(
                queued_rows=self._queued,
                written_rows=self._stats.written_rows,
                written_batches=self._stats.written_batches,
                failed_batches=self._stats.failed_batches,
                dropped_rows=dict(self._stats.dropped_rows),
                sampled_out_rows=self._stats.sampled_out_rows,
            )

    def recent(self, model: str, version: int) -> pd.DataFrame:
        """The most recent logged rows of a model version (up to `recent_rows`), oldest first."""
        with self._lock:
            tables = list(self._recent.get((model, version), ()))
        if not tables:
            return pd.DataFrame()
        frame: pd.DataFrame = pa.concat_tables(tables, promote_options="default").to_pandas()
        return frame

    # -- the writer thread --------------------------------------------------------------------

    def flush(self, timeout: float = 10.0, *, readable: bool = True) -> bool:
        """Write what is queued now (blocking); with `readable`, also make the store show it to
        other processes (closes open Parquet files). False if it did not finish in `timeout`."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while time.monotonic() < deadline:
            with self._lock:
                idle = self._queued == 0 and not self._busy
            if idle:
                return self._make_readable() if readable else True
            time.sleep(0.005)
        return False

    def close(self) -> None:
        """Stop taking records, write what is queued (retrying up to `close_timeout`), close the store."""
        if self._stopping.is_set():
            return
        with self._lock:
            self._stopping.set()
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(self.settings.close_timeout + 5.0)
        try:
            self.store.close()
        except Exception as exc:
            log.warning("prediction log: closing the store failed: %s", exc)

    def _run(self) -> None:
        backoff = 0.1
        pending: list[Entry] = []
        give_up_at: float | None = None
        readable_at = time.monotonic() + self.settings.readable_seconds
        while True:
            stopping = self._stopping.is_set()
            if not pending:
                if not stopping:
                    self._wake.wait(self.settings.flush_seconds)
                    self._wake.clear()
                if time.monotonic() >= readable_at:
                    readable_at = time.monotonic() + self.settings.readable_seconds
                    self._make_readable()
                pending = self._take()
                if not pending:
                    if self._stopping.is_set():
                        return
                    continue
            if self._write(pending):
                pending, backoff = [], 0.1
                continue
            if stopping:
                give_up_at = give_up_at or time.monotonic() + self.settings.close_timeout
                if time.monotonic() >= give_up_at:
                    self._drop_at_close(pending)
                    return
            time.sleep(backoff)
            backoff = min(backoff * 2, self.settings.max_backoff_seconds)

    def _make_readable(self) -> bool:
        """`store.flush()`; False (and a warning) when it failed: a Parquet store that failed here
        has logged what it lost, a database's rows were committed at each write."""
        try:
            self.store.flush()
        except Exception as exc:
            log.warning("prediction log: making the log readable failed: %s", exc)
            return False
        return True

    def _take(self) -> list[Entry]:
        taken: list[Entry] = []
        rows = 0
        with self._lock:
            while self._queue and rows < self.settings.batch_rows:
                entry = self._queue.popleft()
                taken.append(entry)
                rows += entry.rows
            self._busy = bool(taken)
        return taken

    def _write(self, entries: list[Entry]) -> bool:
        """Write `entries` (one table per model); True when every table was written."""
        by_model: dict[str, list[Entry]] = {}
        for entry in entries:
            by_model.setdefault(entry.model, []).append(entry)
        for model, group in list(by_model.items()):
            table = build_table(group)
            try:
                self.store.write(model, table)
            except Exception as exc:
                with self._lock:
                    self._stats.failed_batches += 1
                log.warning(
                    "prediction log: writing %d rows of %s failed (will retry): %s",
                    table.num_rows,
                    model,
                    exc,
                )
                entries[:] = [e for m in by_model for e in by_model[m]]  # what is left to write
                return False
            del by_model[model]
            self._remember(group, table)
            with self._lock:
                self._stats.written_rows += table.num_rows
                self._stats.written_batches += 1
                self._queued -= table.num_rows
        with self._lock:
            self._busy = False
        return True

    def _remember(self, group: list[Entry], table: pa.Table) -> None:
        cap = self.settings.recent_rows
        if cap <= 0:
            return
        versions = {entry.version for entry in group}
        for version in versions:
            part = table if len(versions) == 1 else table.filter(pc.equal(table["version"], version))
            key = (group[0].model, version)
            with self._lock:
                kept = self._recent.setdefault(key, deque())
                kept.append(part)
                count = self._recent_rows.get(key, 0) + part.num_rows
                while kept and count - kept[0].num_rows >= cap:
                    count -= kept.popleft().num_rows
                self._recent_rows[key] = count

    def _drop_at_close(self, entries: list[Entry]) -> None:
        with self._lock:
            for entry in entries:
                dropped = self._stats.dropped_rows
                dropped[entry.model] = dropped.get(entry.model, 0) + entry.rows
                self._queued -= entry.rows
            self._busy = False
        log.error(
            "prediction log: the store still fails after %.0f s at shutdown; %d rows were not written",
            self.settings.close_timeout,
            sum(entry.rows for entry in entries),
        )


def _sample_point(request_id: str) -> float:
    """A request id's fixed point in [0, 1): the same id is always sampled the same way."""
    return zlib.crc32(request_id.encode()) / 2**32
