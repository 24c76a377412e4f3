"""DataIO: read a data set from a file, an http(s) URL or a SQL query; write and hash frames.

Every failure a user can cause becomes one `DataError` line that names the path or URL; no
pandas, pyarrow, urllib or SQLAlchemy traceback escapes this module.
"""

from __future__ import annotations

import hashlib
import io
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Literal, cast

import pandas as pd
import sqlalchemy
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from layerops.errors import DataError, SpecError
from layerops.spec import DataSpec, PipelineSpec

Format = Literal["csv", "parquet", "json", "jsonl"]

FORMATS: tuple[Format, ...] = ("csv", "parquet", "json", "jsonl")
"""The formats DataIO reads and writes."""

_EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_HTTP_TIMEOUT_SECONDS = 30.0
_SNIFF_BYTES = 8192


def is_url(source: str) -> bool:
    """True when `source` is an http(s) URL rather than a local path."""
    return source.lower().startswith(("http://", "https://"))


def infer_format(source: str, format: str | None = None) -> Format:
    """The format to use: `format` when given, else the extension of the path or URL path."""
    if format is not None:
        if format not in FORMATS:
            raise DataError(f"{source}: unsupported format {format!r}; use one of {', '.join(FORMATS)}")
        return format
    name = urllib.parse.urlsplit(source).path if is_url(source) else source
    suffix = Path(name).suffix.lower()
    if not suffix:
        raise DataError(f"{source}: cannot infer the format (no file extension); set data.format")
    if suffix not in _EXTENSIONS:
        known = ", ".join(_EXTENSIONS)
        raise DataError(f"{source}: unsupported extension {suffix!r}; use one of {known} or set data.format")
    return _EXTENSIONS[suffix]


def read_frame(source: str, *, format: str | None = None) -> pd.DataFrame:
    """Read a csv/parquet/json/jsonl file from a local path or an http(s) URL."""
    if "://" in source and not is_url(source):
        scheme = source.split("://", 1)[0]
        raise DataError(f"{source}: unsupported URL scheme {scheme!r}; use http(s) or a local path")
    content: bytes | Path
    if is_url(source):
        fmt = infer_format(source, format)
        content = _fetch(source)
        head = content[:_SNIFF_BYTES]
    else:
        content = _local_file(source)
        fmt = infer_format(source, format)
        head = _read_head(content, source)
    if fmt != "parquet" and b"\x00" in head:
        raise DataError(f"{source}: not a text file, cannot read it as {fmt}")
    frame = _parse(content, fmt, source)
    return _non_empty(frame, source)


def read_sql(url: str, query: str) -> pd.DataFrame:
    """Run `query` against the SQLAlchemy `url` and return the result as a frame."""
    shown = _safe_url(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise DataError(f"{shown}: not a valid SQLAlchemy URL") from exc
    _check_sqlite_file(parsed, shown)
    try:
        engine = sqlalchemy.create_engine(parsed)
    except NoSuchModuleError as exc:
        raise DataError(f"{shown}: unknown database dialect {parsed.drivername!r}") from exc
    except ImportError as exc:
        raise DataError(f"{shown}: the database driver is not installed ({exc.name or exc})") from exc
    except (ArgumentError, ValueError, TypeError) as exc:
        raise DataError(f"{shown}: not a valid SQLAlchemy URL ({_first_line(exc)})") from exc
    try:
        with engine.connect() as connection:
            frame = pd.read_sql_query(query, connection)
    except (SQLAlchemyError, pd.errors.DatabaseError, ValueError, TypeError) as exc:
        raise DataError(f"{shown}: query failed: {_driver_reason(exc)}") from exc
    finally:
        engine.dispose()
    return _non_empty(frame, f"{shown} (query)")


def load_source(data: DataSpec, base_dir: Path) -> pd.DataFrame:
    """Read the data a spec names; relative paths (and sqlite files) resolve against `base_dir`."""
    if data.sql is not None:
        return read_sql(_resolve_sqlite(data.sql.url, base_dir), data.sql.query)
    assert data.path is not None  # DataSpec guarantees exactly one of path or sql
    source = data.path
    if "://" not in source and not Path(source).is_absolute():
        source = str(base_dir / source)
    return read_frame(source, format=data.format)


def training_frame(spec: PipelineSpec, data: pd.DataFrame | None) -> pd.DataFrame:
    """The rows to train on: `data` when given (the spec then names no source), else the spec's source."""
    if data is not None:
        if spec.data is not None:
            raise SpecError(f"{spec.name}: both a DataFrame and the spec's data source were given")
        if not isinstance(data, pd.DataFrame) or data.empty:
            raise DataError("data must be a non-empty pandas DataFrame")
        return data.reset_index(drop=True)
    if spec.data is None:
        raise SpecError(
            f"{spec.name}: the spec names no data source: give data.path or data.sql "
            "(or pass a DataFrame: layerops.train(spec, data=frame))"
        )
    return load_source(spec.data, spec.base_dir)


def write_frame(frame: pd.DataFrame, path: str | Path, *, format: str | None = None) -> Path:
    """Write `frame` (without its index) as csv/parquet/json/jsonl; the format follows the extension."""
    target = Path(path)
    fmt = infer_format(str(target), format)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            frame.to_csv(target, index=False)
        elif fmt == "parquet":
            frame.to_parquet(target, index=False)
        elif fmt == "json":
            target.write_text(json.dumps(_records(frame), default=str), encoding="utf-8")
        else:
            lines = (json.dumps(record, default=str) for record in _records(frame))
            target.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{target}: cannot write: {exc.strerror or exc}") from exc
    except (ValueError, TypeError) as exc:
        raise DataError(f"{target}: cannot write as {fmt}: {_first_line(exc)}") from exc
    return target


def dataset_sha256(frame: pd.DataFrame) -> str:
    """A content hash: equal for equal data (columns, order, dtypes, values), else different."""
    digest = hashlib.sha256()
    header = [[str(name), str(dtype)] for name, dtype in frame.dtypes.items()]
    digest.update(json.dumps([len(frame), header]).encode())
    try:
        rows = pd.util.hash_pandas_object(frame, index=False)
    except TypeError:  # unhashable cells (lists, dicts from nested JSON): hash their text
        rows = pd.util.hash_pandas_object(frame.map(repr), index=False)
    digest.update(rows.to_numpy().tobytes())
    return digest.hexdigest()


# -- internals ------------------------------------------------------------------------------


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _driver_reason(exc: BaseException) -> str:
    """The database driver's own message, under pandas' and SQLAlchemy's wrappers."""
    cause: BaseException | None = exc
    while cause is not None:
        orig = getattr(cause, "orig", None)
        if isinstance(orig, BaseException):
            return _first_line(orig)
        cause = cause.__cause__
    return _first_line(exc)


def _local_file(source: str) -> Path:
    path = Path(source)
    if not path.exists():
        raise DataError(f"{source}: file not found")
    if path.is_dir():
        raise DataError(f"{source}: is a directory, not a data file")
    return path


def _read_head(path: Path, source: str) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(_SNIFF_BYTES)
    except OSError as exc:
        raise DataError(f"{source}: cannot read: {exc.strerror or exc}") from exc


def _fetch(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "layerops"})  # noqa: S310 (http(s) only)
    try:
        with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310
            return cast(bytes, response.read())
    except urllib.error.HTTPError as exc:
        raise DataError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DataError(f"{url}: cannot reach the server ({_first_line(exc.reason)})") from exc
    except TimeoutError as exc:
        raise DataError(f"{url}: no answer within {_HTTP_TIMEOUT_SECONDS:.0f} s") from exc
    except (OSError, ValueError) as exc:
        raise DataError(f"{url}: cannot download: {_first_line(exc)}") from exc


def _parse(content: bytes | Path, fmt: Format, source: str) -> pd.DataFrame:
    try:
        data = io.BytesIO(content) if isinstance(content, bytes) else content
        if fmt == "parquet":
            return pd.read_parquet(data)
        if fmt == "csv":
            return pd.read_csv(data, float_precision="round_trip")
        raw = content if isinstance(content, bytes) else content.read_bytes()
        text = raw.decode("utf-8-sig")
        return _parse_json(text, source) if fmt == "json" else _parse_jsonl(text, source)
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: not UTF-8 text, cannot read it as {fmt}") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{source}: the file is empty (no columns)") from exc
    except OSError as exc:
        raise DataError(f"{source}: cannot read: {exc.strerror or _first_line(exc)}") from exc
    except Exception as exc:  # pandas/pyarrow raise many types for corrupt content
        raise DataError(f"{source}: cannot read as {fmt}: {_first_line(exc)}") from exc


def _parse_json(text: str, source: str) -> pd.DataFrame:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = " (for JSON lines use a .jsonl file or format: jsonl)" if exc.msg == "Extra data" else ""
        raise DataError(f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}{hint}") from exc
    if isinstance(document, list) and all(isinstance(item, dict) for item in document):
        return pd.DataFrame.from_records(document) if document else pd.DataFrame()
    if isinstance(document, dict) and all(isinstance(v, dict | list) for v in document.values()):
        frame = pd.DataFrame(document)  # pandas' default orient: {column: {index: value}}
        return frame.reset_index(drop=True)
    raise DataError(f"{source}: expected a JSON array of records or an object of columns")


def _parse_jsonl(text: str, source: str) -> pd.DataFrame:
    records: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{source}: line {number} is not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise DataError(f"{source}: line {number} is not a JSON object")
        records.append(record)
    return pd.DataFrame.from_records(records) if records else pd.DataFrame()


def _non_empty(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    if frame.shape[1] == 0:
        raise DataError(f"{source}: no data (no columns)")
    if frame.shape[0] == 0:
        raise DataError(f"{source}: no data (no rows)")
    return frame


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: native Python values and None for every missing value."""
    boxed = frame.astype(object).where(frame.notna(), None)
    return [{str(k): v for k, v in row.items()} for row in boxed.to_dict(orient="records")]


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL: show only its scheme, never a possible password
        return url.split("://", 1)[0] + "://..." if "://" in url else "<invalid SQL URL>"


def _sqlite_file(url: URL) -> str | None:
    database = url.database
    if not url.drivername.startswith("sqlite") or not database or database == ":memory:":
        return None
    if database.startswith("file:") or url.query.get("mode") == "memory":
        return None
    return database


def _check_sqlite_file(url: URL, shown: str) -> None:
    # sqlite silently creates a missing database file; a typo would read as "no such table".
    database = _sqlite_file(url)
    if database is not None and not Path(database).is_file():
        raise DataError(f"{shown}: database file {database} not found")


def _resolve_sqlite(url: str, base_dir: Path) -> str:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return url  # read_sql reports it
    database = _sqlite_file(parsed)
    if database is None or Path(database).is_absolute():
        return url
    return parsed.set(database=str(base_dir / database)).render_as_string(hide_password=False)
