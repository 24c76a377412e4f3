"""Where the prediction log and its feedback live: the `LogStore` contract and `open_store`.

A store appends batches in the layout of `records.py` and reads them back as pandas frames. The
server's background writer is the only caller of `write`/`flush`/`close` in a process; `read`,
`models`, `find_requests` and the feedback methods may be called from any thread and any process.
Two implementations: Parquet files under a folder (`parquet_store.py`, the default) and
PostgreSQL tables (`postgres_store.py`). `open_store` picks one from a target string.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, overload, runtime_checkable
from urllib.parse import unquote, urlsplit

import pandas as pd
import pyarrow as pa

from layerops.errors import LayeropsError
from layerops.monitoring.records import BASE_COLUMNS, FEEDBACK_COLUMNS, INPUT_PREFIX, PROBA_PREFIX, Window

ACCEPTED_TARGETS = "a folder path, file:///path or postgresql://user@host:port/database"
_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@]*):[^@/]*@")


class SinkError(LayeropsError):
    """The prediction log cannot be written or read (unreachable database, unwritable folder)."""


@runtime_checkable
class LogStore(Protocol):
    """Append-only storage of logged predictions and feedback, read back by model and window."""

    def write(self, model: str, batch: pa.Table) -> None:
        """Append one batch of `model`'s rows; all or nothing, `SinkError` on failure (retryable)."""
        ...

    def flush(self) -> None:
        """Make every row written so far readable by other processes."""
        ...

    def close(self) -> None:
        """Flush and release files or connections; idempotent."""
        ...

    def read(self, model: str, window: Window) -> pd.DataFrame:
        """`model`'s logged rows in `window`, ordered by time (at least the base columns when empty)."""
        ...

    def models(self) -> list[str]:
        """The models with a log, sorted."""
        ...

    def write_feedback(self, model: str, feedback: pd.DataFrame) -> None:
        """Append ground truth (`request_id`, `row`, `label`, `time`) for `model`."""
        ...

    def read_feedback(self, model: str) -> pd.DataFrame:
        """Every feedback row of `model` (columns `request_id`, `row`, `label`, `time`)."""
        ...

    def find_requests(self, model: str, request_ids: Collection[str]) -> set[str]:
        """The ids among `request_ids` that have logged rows of `model`."""
        ...


def redact(target: str) -> str:
    """`target` with any password in a URL replaced by `***` (for messages, logs and reprs)."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", target)


def postgres_url(target: str) -> str | None:
    """`target` as a SQLAlchemy psycopg 3 URL when it names PostgreSQL, else None."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if target.startswith(prefix):
            return "postgresql+psycopg://" + target[len(prefix) :]
    return None


def open_store(target: str | None, home: Path, **options: Any) -> LogStore:
    """The store `target` names: None or "" → Parquet under `home/predictions`; a folder path or
    `file:///path` → Parquet there; `postgresql://…` → PostgreSQL. `options` go to its constructor.

    Raises `SinkError` (one line, no password) for any other form.
    """
    # Imported here: each store pulls in its own heavy dependency (sqlalchemy) only when chosen.
    from layerops.monitoring.parquet_store import ParquetStore

    text = (target or "").strip()
    if not text:
        return ParquetStore(home / "predictions", **options)
    url = postgres_url(text)
    if url is not None:
        from layerops.monitoring.postgres_store import PostgresStore

        return PostgresStore(url, **options)
    if text.startswith("file://"):
        parts = urlsplit(text)
        if parts.netloc not in {"", "localhost"} or not parts.path:
            raise SinkError(f"bad prediction log target {redact(text)!r}: use file:///absolute/path")
        return ParquetStore(Path(unquote(parts.path)), **options)
    if "://" in text:
        raise SinkError(f"unsupported prediction log target {redact(text)!r}: use {ACCEPTED_TARGETS}")
    return ParquetStore(Path(text).expanduser(), **options)


LOG_TYPES: dict[str, pa.DataType] = {
    "request_id": pa.string(),
    "row": pa.int32(),
    "time": pa.timestamp("us", tz="UTC"),
    "model": pa.string(),
    "version": pa.int32(),
    "variant": pa.string(),
    "latency_ms": pa.float64(),
    "prediction": pa.string(),
}
"""The base columns' Arrow types (`prediction` is float64 for regressors)."""
REQUIRED_COLUMNS = ("request_id", "row", "time")
"""The columns a batch (and a feedback frame) cannot do without."""


@overload
def as_utc(moment: datetime) -> datetime: ...
@overload
def as_utc(moment: None) -> None: ...


def as_utc(moment: datetime | None) -> datetime | None:
    """`moment` as an aware UTC datetime (a naive one is taken as UTC)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def normalise_batch(batch: pa.Table) -> pa.Table:
    """`batch` with the base columns in their `LOG_TYPES` (a float `prediction` left as it is),
    `large_string` columns as `string` and no schema metadata; `SinkError` when it lacks
    `REQUIRED_COLUMNS`, has a row without a time or a column that cannot be cast."""
    missing = [c for c in REQUIRED_COLUMNS if c not in batch.column_names]
    if missing:
        raise SinkError(f"a prediction log batch lacks the column(s) {', '.join(missing)}")
    if batch["time"].null_count:
        raise SinkError(f"a prediction log batch has {batch['time'].null_count} row(s) without a time")
    fields = []
    for item in batch.schema:
        wanted = LOG_TYPES.get(item.name) if item.name != "prediction" else None
        if wanted is None:
            wanted = pa.string() if pa.types.is_large_string(item.type) else item.type
        fields.append(pa.field(item.name, wanted))
    schema = pa.schema(fields)
    if schema.equals(batch.schema, check_metadata=True):
        return batch
    try:
        return batch.cast(schema, safe=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SinkError(f"a prediction log batch has a column of the wrong type: {exc}") from exc


def ordered_columns(columns: Collection[str]) -> list[str]:
    """`columns` in log order: the base columns, then `proba.*`, then `input.*`, then any others."""
    base = [c for c in BASE_COLUMNS if c in columns]
    probas = [c for c in columns if c.startswith(PROBA_PREFIX)]
    inputs = [c for c in columns if c.startswith(INPUT_PREFIX)]
    known = {*base, *probas, *inputs}
    return base + probas + inputs + [c for c in columns if c not in known]


def empty_log_frame() -> pd.DataFrame:
    """A log frame with no rows and the base columns, typed."""
    return to_frame(pa.schema(list(LOG_TYPES.items())).empty_table())


def empty_feedback_frame() -> pd.DataFrame:
    """A feedback frame with no rows."""
    schema = pa.schema(
        [
            ("request_id", pa.string()),
            ("row", pa.int32()),
            ("label", pa.string()),
            ("time", LOG_TYPES["time"]),
        ]
    )
    return to_frame(schema.empty_table())


def to_frame(table: pa.Table) -> pd.DataFrame:
    """`table` as a pandas frame, one block per column (no consolidating copy), freeing `table`'s
    buffers as it goes: the caller must not use `table` afterwards."""
    frame: pd.DataFrame = table.to_pandas(split_blocks=True, self_destruct=True)
    return frame


def check_feedback_columns(model: str, feedback: pd.DataFrame) -> None:
    """Raise `SinkError` unless `feedback` has every feedback column."""
    missing = [c for c in FEEDBACK_COLUMNS if c not in feedback.columns]
    if missing:
        raise SinkError(f"feedback for {model!r} lacks the column(s) {', '.join(missing)}")
