"""The prediction log in PostgreSQL tables, through SQLAlchemy Core and psycopg 3.

One row per logged row: the base columns as columns (`prediction` as text for a classifier,
`value` as a double for a regressor), class probabilities and inputs as `jsonb`. `read` rebuilds
the Parquet store's frame layout; its `proba.*`/`input.*` columns come in jsonb's key order
(shorter names first), not the model's. Feedback rows keep the label as text and, for a regressor,
as a double too. The tables (and their indexes on `(model, time)` and `(model, request_id)`) are
created on first use, under an advisory lock so
that several processes starting at once do not race. Each `write` is one transaction: a failure
leaves nothing. Connections time out after a few seconds, so a database that is down fails the
call fast (the log writer retries) instead of hanging its thread.
"""

from __future__ import annotations

import io
import json
import re
import threading
import zlib
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from itertools import repeat
from typing import Any

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import sqlalchemy as sa
from psycopg import sql as psql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.schema import CreateIndex, CreateTable

from layerops.monitoring.records import INPUT_PREFIX, PROBA_PREFIX, Window
from layerops.monitoring.store import (
    LOG_TYPES,
    SinkError,
    as_utc,
    check_feedback_columns,
    empty_feedback_frame,
    empty_log_frame,
    normalise_batch,
    ordered_columns,
    postgres_url,
    redact,
    to_frame,
)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_IN_CHUNK = 5_000
_INSERT_ROWS = 2_000
_SCALARS = ("request_id", "row", "time", "version", "variant", "latency_ms")


class PostgresStore:
    """A `LogStore` in two PostgreSQL tables (`table` and `feedback_table`, created if missing)."""

    def __init__(
        self,
        url: str,
        *,
        table: str = "layerops_predictions",
        feedback_table: str = "layerops_feedback",
        connect_timeout: int = 3,
    ) -> None:
        for name in (table, feedback_table):
            if not _IDENTIFIER.fullmatch(name):
                raise SinkError(f"bad PostgreSQL table name {name!r}: use letters, digits and _ (at most 63)")
        try:
            self.url = sa.make_url(postgres_url(url) or url)
        except sa.exc.ArgumentError as exc:
            raise SinkError(f"bad PostgreSQL URL {redact(url)!r}") from exc
        self._engine = sa.create_engine(
            self.url, pool_pre_ping=True, pool_size=2, connect_args={"connect_timeout": connect_timeout}
        )
        metadata = sa.MetaData()
        self._log = sa.Table(
            table,
            metadata,
            sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
            sa.Column("request_id", sa.Text, nullable=False),
            sa.Column("row", sa.Integer, nullable=False),
            sa.Column("time", sa.DateTime(timezone=True), nullable=False),
            sa.Column("model", sa.Text, nullable=False),
            sa.Column("version", sa.Integer),
            sa.Column("variant", sa.Text),
            sa.Column("latency_ms", sa.Double),
            sa.Column("prediction", sa.Text),
            sa.Column("value", sa.Double),
            sa.Column("probabilities", JSONB(none_as_null=True)),
            sa.Column("inputs", JSONB(none_as_null=True)),
            sa.Index(f"{table}_model_time", "model", "time"),
            sa.Index(f"{table}_model_request", "model", "request_id"),
        )
        self._feedback = sa.Table(
            feedback_table,
            metadata,
            sa.Column("request_id", sa.Text, nullable=False),
            sa.Column("row", sa.Integer, nullable=False),
            sa.Column("model", sa.Text, nullable=False),
            sa.Column("label", sa.Text),
            sa.Column("value", sa.Double),
            sa.Column("time", sa.DateTime(timezone=True), nullable=False),
            sa.Index(f"{feedback_table}_model_time", "model", "time"),
        )
        self._ready = False
        self._closed = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresStore({self.url.render_as_string(hide_password=True)!r})"

    def _fail(self, doing: str, exc: Exception) -> SinkError:
        cause = getattr(exc, "orig", None) or exc
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        where = self.url.render_as_string(hide_password=True)
        return SinkError(redact(f"cannot {doing} in PostgreSQL at {where}: {first}"))

    @contextmanager
    def _connect(self, doing: str) -> Iterator[sa.Connection]:
        """A connection inside one transaction, the tables created first; failures as `SinkError`."""
        if self._closed:
            raise SinkError(f"the prediction log at {self!r} is closed")
        try:
            with self._engine.begin() as connection:
                if not self._ready:
                    self._create_tables(connection)
                yield connection
        except (sa.exc.SQLAlchemyError, psycopg.Error) as exc:
            raise self._fail(doing, exc) from exc
        self._ready = True

    def _create_tables(self, connection: sa.Connection) -> None:
        # IF NOT EXISTS alone still races on the catalog: a transaction lock serialises creators.
        key = zlib.crc32(f"layerops:{self._log.name}:{self._feedback.name}".encode())
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
        for table in (self._log, self._feedback):
            connection.execute(CreateTable(table, if_not_exists=True))
            for index in table.indexes:
                connection.execute(CreateIndex(index, if_not_exists=True))

    # -- writing ---------------------------------------------------------------------------------

    def write(self, model: str, batch: pa.Table) -> None:
        """Insert `batch` in one transaction (all rows or none); `SinkError` on failure."""
        if batch.num_rows == 0:
            return
        columns, rows = _copy_rows(model, normalise_batch(batch))
        statement = psql.SQL("COPY {} ({}) FROM STDIN").format(
            psql.Identifier(self._log.name), psql.SQL(", ").join(map(psql.Identifier, columns))
        )
        with self._connect(f"write {batch.num_rows} logged rows of {model!r}") as connection:
            # COPY, inside the transaction: ~20x faster than executemany, and still all or nothing.
            driver = connection.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            with driver.cursor() as cursor, cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)

    def flush(self) -> None:
        """Nothing to do: every `write` is committed when it returns."""

    def close(self) -> None:
        """Release the connections; idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._engine.dispose()

    # -- reading ---------------------------------------------------------------------------------

    def read(self, model: str, window: Window) -> pd.DataFrame:
        """`model`'s rows in `window` ordered by time, in the layout of the Parquet store."""
        log = self._log
        # jsonb as text: pyarrow parses a column of documents far faster than json.loads per row.
        documents = (sa.cast(log.c.probabilities, sa.Text), sa.cast(log.c.inputs, sa.Text))
        query = sa.select(*(log.c[name] for name in (*_SCALARS, "prediction", "value")), *documents)
        query = query.where(log.c.model == model)
        if window.since is not None:
            query = query.where(log.c.time >= as_utc(window.since))
        if window.until is not None:
            query = query.where(log.c.time < as_utc(window.until))
        if window.last is not None:
            query = query.order_by(log.c.time.desc(), log.c.id.desc()).limit(window.last)
        else:
            query = query.order_by(log.c.time, log.c.id)
        with self._connect(f"read the log of {model!r}") as connection:
            records = list(connection.execute(query).all())
        if window.last is not None:
            records.reverse()
        return _log_frame(model, records)

    def models(self) -> list[str]:
        """The models with logged rows, sorted."""
        with self._connect("list the logged models") as connection:
            names = connection.execute(sa.select(self._log.c.model).distinct().order_by(self._log.c.model))
            return [str(name) for name in names.scalars()]

    def find_requests(self, model: str, request_ids: Collection[str]) -> set[str]:
        """The ids among `request_ids` with logged rows of `model`."""
        wanted = sorted({str(i) for i in request_ids})
        found: set[str] = set()
        column = self._log.c.request_id
        with self._connect(f"look up requests of {model!r}") as connection:
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                query = sa.select(column).distinct().where(self._log.c.model == model, column.in_(chunk))
                found.update(str(i) for i in connection.execute(query).scalars())
        return found

    # -- feedback --------------------------------------------------------------------------------

    def write_feedback(self, model: str, feedback: pd.DataFrame) -> None:
        """Insert `feedback` in one transaction (label as text, and as a double when numeric)."""
        check_feedback_columns(model, feedback)
        if feedback.empty:
            return
        numeric = pd.api.types.is_numeric_dtype(feedback["label"])
        times = pd.to_datetime(feedback["time"], utc=True)
        rows = [
            {
                "request_id": str(request_id),
                "row": int(row),
                "model": model,
                "label": None if pd.isna(label) else str(label),
                "value": float(label) if numeric and not pd.isna(label) else None,
                "time": moment.to_pydatetime(),
            }
            for request_id, row, label, moment in zip(
                feedback["request_id"], feedback["row"], feedback["label"], times, strict=True
            )
        ]
        with self._connect(f"write feedback of {model!r}") as connection:
            connection.execute(sa.insert(self._feedback), rows)

    def read_feedback(self, model: str) -> pd.DataFrame:
        """Every feedback row of `model` ordered by time; the label is float when it was numeric."""
        table = self._feedback
        query = sa.select(table.c.request_id, table.c.row, table.c.label, table.c.value, table.c.time)
        query = query.where(table.c.model == model).order_by(table.c.time)
        with self._connect(f"read feedback of {model!r}") as connection:
            records = connection.execute(query).all()
        if not records:
            return empty_feedback_frame()
        ids, rows, labels, values, times = zip(*records, strict=True)
        numeric = any(v is not None for v in values)
        columns = {
            "request_id": pa.array(ids, pa.string()),
            "row": pa.array(rows, pa.int32()),
            "label": pa.array(values, pa.float64()) if numeric else pa.array(labels, pa.string()),
            "time": pa.array(times, LOG_TYPES["time"]),
        }
        return to_frame(pa.table(columns))


def _copy_rows(model: str, batch: pa.Table) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
    """The log table's columns and `batch`'s rows for them (the jsonb documents as JSON text)."""
    names = batch.column_names
    count = batch.num_rows

    def values(column: pa.ChunkedArray | None) -> list[Any]:
        return [None] * count if column is None else column.to_pylist()

    scalars = [values(batch[name] if name in names else None) for name in _SCALARS]
    prediction = batch["prediction"] if "prediction" in names else None
    numeric = prediction is not None and (
        pa.types.is_floating(prediction.type) or pa.types.is_integer(prediction.type)
    )
    texts = values(None if numeric or prediction is None else prediction.cast(pa.string()))
    numbers = values(prediction if numeric else None)
    probabilities = values(_json_documents(batch, PROBA_PREFIX))
    documents = _json_documents(batch, INPUT_PREFIX)
    inputs = ["{}"] * count if documents is None else documents.to_pylist()
    columns = [*_SCALARS, "model", "prediction", "value", "probabilities", "inputs"]
    rows = zip(*scalars, repeat(model, count), texts, numbers, probabilities, inputs, strict=False)
    return columns, rows


def _json_documents(batch: pa.Table, prefix: str) -> pa.ChunkedArray | None:
    """One JSON object per row of `batch`'s `prefix` columns (keys without the prefix), built column-
    wise by Arrow: numbers in their shortest round-trip form, NaN and missing values as null.
    None when `batch` has no such column."""
    selected = [name for name in batch.column_names if name.startswith(prefix)]
    if not selected:
        return None
    parts: list[Any] = []
    for index, name in enumerate(selected):
        column = batch[name]
        if pa.types.is_string(column.type):
            if pc.any(pc.match_substring_regex(column, r"[\x00-\x1f]")).as_py():  # rare: let json escape
                text = pa.array(
                    [None if v is None else json.dumps(v) for v in column.to_pylist()], pa.string()
                )
            else:
                escaped = pc.replace_substring(pc.replace_substring(column, "\\", "\\\\"), '"', '\\"')
                text = pc.binary_join_element_wise('"', escaped, '"', "")
        else:
            number = column.cast(pa.float64())
            text = pc.if_else(pc.is_finite(number), number.cast(pa.string()), pa.scalar(None, pa.string()))
        parts += [
            ("{" if index == 0 else ",") + json.dumps(name[len(prefix) :]) + ":",
            pc.fill_null(text, "null"),
        ]
    return pc.binary_join_element_wise(*parts, "}", "")


def _json_column(values: list[Any]) -> pa.Array:
    """A JSON field's values as float64, or as strings when any is a string (a categorical input)."""
    if any(isinstance(v, str) for v in values):
        return pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.array([None if v is None else float(v) for v in values], pa.float64())


def _json_columns(prefix: str, documents: Sequence[str | None]) -> dict[str, pa.Array]:
    """The fields of JSON object `documents` (one per row, None = no object) as `prefix`ed columns:
    numbers as float64, text as string."""
    # Only objects reach pyarrow: it crashes (pyarrow 25) on a line holding a bare JSON `null`.
    objects = [d if d and d.startswith("{") else "{}" for d in documents]
    if all(d == "{}" for d in objects):
        return {}
    text = "\n".join(objects).encode()
    try:
        table = pa_json.read_json(io.BytesIO(text))
    except pa.ArrowInvalid:  # a field with numbers and text: decode in Python
        parsed = [json.loads(d) for d in objects]
        keys = dict.fromkeys(key for document in parsed for key in document)
        return {prefix + key: _json_column([d.get(key) for d in parsed]) for key in keys}
    columns = {}
    for name, values in zip(table.column_names, table.columns, strict=True):
        kind = values.type
        wanted = pa.string() if pa.types.is_string(kind) or pa.types.is_large_string(kind) else pa.float64()
        columns[prefix + name] = values.cast(wanted)
    return columns


def _log_frame(model: str, records: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Rows of the log table as the frame layout of `records.py`."""
    if not records:
        return empty_log_frame()
    fields = list(zip(*records, strict=True))
    by_name = dict(zip((*_SCALARS, "prediction", "value", "probabilities", "inputs"), fields, strict=True))
    columns: dict[str, pa.Array] = {
        name: pa.array(by_name[name], LOG_TYPES[name]) for name in ("request_id", "row", "time")
    }
    columns["model"] = pa.array([model] * len(records), pa.string())
    for name in ("version", "variant", "latency_ms"):
        columns[name] = pa.array(by_name[name], LOG_TYPES[name])
    regression = all(p is None for p in by_name["prediction"]) and any(
        v is not None for v in by_name["value"]
    )
    columns["prediction"] = (
        pa.array(by_name["value"], pa.float64())
        if regression
        else pa.array(by_name["prediction"], pa.string())
    )
    columns.update(_json_columns(PROBA_PREFIX, by_name["probabilities"]))
    columns.update(_json_columns(INPUT_PREFIX, by_name["inputs"]))
    table = pa.table(columns)
    return to_frame(table.select(ordered_columns(table.column_names)))
