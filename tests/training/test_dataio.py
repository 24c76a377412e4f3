"""DataIO: reading files, URLs and SQL; writing; content hashes; one-line DataErrors."""

from __future__ import annotations

import http.server
import socket
import sqlite3
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from layerops.errors import DataError
from layerops.spec import DataSpec
from layerops.training.dataio import (
    FORMATS,
    dataset_sha256,
    load_source,
    read_frame,
    read_sql,
    write_frame,
)


def _one_line_error(call: object, *args: object, **kwargs: object) -> str:
    assert callable(call)
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.fixture
def typed_frame(mixed_frame: pd.DataFrame) -> pd.DataFrame:
    """The mixed frame plus an integer and a boolean column, so every common dtype is covered."""
    frame = mixed_frame.copy()
    frame["pieces"] = range(len(frame))
    frame["fragile"] = frame["weight"] > 10
    return frame


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_keeps_columns_dtypes_and_values(
    typed_frame: pd.DataFrame, tmp_path: Path, fmt: str
) -> None:
    path = write_frame(typed_frame, tmp_path / "sub" / f"data.{fmt}")
    assert path.is_file()
    back = read_frame(str(path))
    pd.testing.assert_frame_equal(back, typed_frame, check_exact=True)
    assert dataset_sha256(back) == dataset_sha256(typed_frame)


def test_explicit_format_overrides_the_extension(iris_frame: pd.DataFrame, tmp_path: Path) -> None:
    path = write_frame(iris_frame, tmp_path / "iris.txt", format="csv")
    pd.testing.assert_frame_equal(read_frame(str(path), format="csv"), iris_frame)


def test_json_in_pandas_default_orient_and_as_records(iris_frame: pd.DataFrame, tmp_path: Path) -> None:
    default = tmp_path / "default.json"
    default.write_text(iris_frame.to_json(), encoding="utf-8")
    records = tmp_path / "records.json"
    records.write_text(iris_frame.to_json(orient="records"), encoding="utf-8")
    for path in (default, records):
        back = read_frame(str(path))
        assert list(back.columns) == list(iris_frame.columns)
        pd.testing.assert_series_equal(back["species"], iris_frame["species"])
        assert back["sepal_length"].tolist() == pytest.approx(iris_frame["sepal_length"].tolist())


def test_jsonl_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1, "b": "x"}\n\n{"a": 2, "b": null}\n', encoding="utf-8")
    frame = read_frame(str(path))
    assert frame["a"].tolist() == [1, 2]
    assert frame["b"].isna().tolist() == [False, True]


# -- hashing --------------------------------------------------------------------------------


def test_dataset_hash_is_stable_and_sensitive(mixed_frame: pd.DataFrame) -> None:
    digest = dataset_sha256(mixed_frame)
    assert digest == dataset_sha256(mixed_frame.copy())
    assert len(digest) == 64
    changed = mixed_frame.copy()
    changed["weight"] = changed["weight"].where(changed.index != 17, changed["weight"] + 1e-9)
    assert dataset_sha256(changed) != digest
    renamed = mixed_frame.rename(columns={"origin": "source"})
    assert dataset_sha256(renamed) != digest
    reordered = mixed_frame[list(reversed(mixed_frame.columns))]
    assert dataset_sha256(reordered) != digest
    as_float = mixed_frame.assign(n=range(len(mixed_frame)))
    assert dataset_sha256(as_float) != dataset_sha256(as_float.astype({"n": "float64"}))
    assert dataset_sha256(mixed_frame.iloc[:-1]) != digest
    # the index is not content
    assert dataset_sha256(mixed_frame.set_axis(range(1000, 1400))) == digest


# -- HTTP -----------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving a temporary folder: (base URL, folder)."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_read_csv_over_http_with_query_string(http_root: tuple[str, Path], iris_frame: pd.DataFrame) -> None:
    base, root = http_root
    write_frame(iris_frame, root / "iris.csv")
    write_frame(iris_frame, root / "iris.parquet")
    pd.testing.assert_frame_equal(read_frame(f"{base}/iris.csv?version=2"), iris_frame)
    pd.testing.assert_frame_equal(read_frame(f"{base}/iris.parquet"), iris_frame)
    spec = DataSpec(path=f"{base}/iris.csv")
    assert load_source(spec, Path("/nowhere")).shape == iris_frame.shape


def test_http_404_names_the_url(http_root: tuple[str, Path]) -> None:
    url = f"{http_root[0]}/missing.csv"
    message = _one_line_error(read_frame, url)
    assert url in message
    assert "404" in message


def test_unreachable_host_names_the_url() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/data.csv"
    message = _one_line_error(read_frame, url)
    assert url in message
    assert "cannot reach" in message


def test_other_url_schemes_are_refused() -> None:
    assert "unsupported URL scheme 's3'" in _one_line_error(read_frame, "s3://bucket/data.csv")


# -- SQL ------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_file(tmp_path: Path, iris_frame: pd.DataFrame) -> Path:
    """A sqlite database with an `iris` table and an empty `vacant` table."""
    path = tmp_path / "db" / "data.db"
    path.parent.mkdir()
    with sqlite3.connect(path) as connection:
        iris_frame.to_sql("iris", connection, index=False)
        connection.execute("CREATE TABLE vacant (a INTEGER)")
    connection.close()
    return path


def test_read_sql_from_sqlite(sqlite_file: Path, iris_frame: pd.DataFrame) -> None:
    frame = read_sql(f"sqlite:///{sqlite_file}", "SELECT * FROM iris WHERE species = 'setosa'")
    assert len(frame) == 50
    assert list(frame.columns) == list(iris_frame.columns)


def test_load_source_resolves_relative_sqlite_and_paths(sqlite_file: Path, iris_frame: pd.DataFrame) -> None:
    base = sqlite_file.parent
    spec = DataSpec.model_validate({"sql": {"url": "sqlite:///data.db", "query": "SELECT * FROM iris"}})
    assert load_source(spec, base).shape == iris_frame.shape
    write_frame(iris_frame, base / "iris.parquet")
    pd.testing.assert_frame_equal(load_source(DataSpec(path="iris.parquet"), base), iris_frame)
    absolute = DataSpec(path=str(base / "iris.parquet"))
    pd.testing.assert_frame_equal(load_source(absolute, Path("/elsewhere")), iris_frame)
    as_csv = DataSpec(path="iris.parquet", format="parquet")
    assert load_source(as_csv, base).shape == iris_frame.shape


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELECT * FROM nowhere", "no such table: nowhere"),
        ("SELEC * FROM iris", "syntax error"),
        ("SELECT * FROM vacant", "no data (no rows)"),
    ],
)
def test_sql_errors_are_one_line(sqlite_file: Path, query: str, expected: str) -> None:
    message = _one_line_error(read_sql, f"sqlite:///{sqlite_file}", query)
    assert str(sqlite_file) in message
    assert expected in message


def test_bad_sql_urls(tmp_path: Path) -> None:
    assert "not a valid SQLAlchemy URL" in _one_line_error(read_sql, "not a url", "SELECT 1")
    assert "unknown database dialect" in _one_line_error(read_sql, "nosuchdb://host/db", "SELECT 1")
    missing = tmp_path / "missing.db"
    message = _one_line_error(read_sql, f"sqlite:///{missing}", "SELECT 1")
    assert f"database file {missing} not found" in message
    assert not missing.exists()  # sqlite did not create it


def test_sql_password_is_never_shown() -> None:
    message = _one_line_error(read_sql, "nosuchdb://user:s3cret@host/db", "SELECT 1")
    assert "s3cret" not in message


# -- file errors ----------------------------------------------------------------------------


def _write(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.csv")
    assert _one_line_error(read_frame, missing) == f"{missing}: file not found"
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    assert _one_line_error(read_frame, str(folder)) == f"{folder}: is a directory, not a data file"


def test_unknown_or_missing_extension(tmp_path: Path) -> None:
    sheet = _write(tmp_path / "data.xlsx", b"x")
    assert "unsupported extension '.xlsx'" in _one_line_error(read_frame, sheet)
    bare = _write(tmp_path / "data", b"a\n1\n")
    assert "cannot infer the format" in _one_line_error(read_frame, bare)
    assert "unsupported format 'xml'" in _one_line_error(read_frame, bare, format="xml")
    assert "unsupported extension" in _one_line_error(
        write_frame, pd.DataFrame({"a": [1]}), tmp_path / "x.xls"
    )


def test_corrupt_content(tmp_path: Path, iris_frame: pd.DataFrame) -> None:
    parquet = write_frame(iris_frame, tmp_path / "good.parquet").read_bytes()
    cases = {
        "binary.csv": (bytes(range(256)) * 4, "not a text file"),
        "latin1.csv": ("größe\n1\n".encode("latin-1"), "not UTF-8"),
        "truncated.parquet": (parquet[: len(parquet) // 2], "cannot read as parquet"),
        "text.parquet": (b"a,b\n1,2\n", "cannot read as parquet"),
        "broken.json": (b'[{"a": 1}, {"a": ', "invalid JSON at line 1"),
        "lines.json": (b'{"a": 1}\n{"a": 2}\n', "format: jsonl"),
        "scalar.json": (b"42", "expected a JSON array of records"),
        "broken.jsonl": (b'{"a": 1}\n{"a": \n', "line 2 is not valid JSON"),
        "array.jsonl": (b"[1, 2]\n", "line 1 is not a JSON object"),
        "ragged.csv": (b"a,b\n1,2\n1,2,3,4\n", "cannot read as csv"),
    }
    for name, (content, expected) in cases.items():
        path = _write(tmp_path / name, content)
        message = _one_line_error(read_frame, path)
        assert message.startswith(path), message
        assert expected in message, message


def test_empty_data(tmp_path: Path) -> None:
    cases = {
        "empty.csv": (b"", "empty"),
        "header.csv": (b"a,b\n", "no data (no rows)"),
        "empty.json": (b"[]", "no data (no columns)"),
        "empty.jsonl": (b"\n\n", "no data (no columns)"),
        "nocols.json": (b"[{}, {}]", "no data (no columns)"),
    }
    for name, (content, expected) in cases.items():
        path = _write(tmp_path / name, content)
        message = _one_line_error(read_frame, path)
        assert message.startswith(path), message
        assert expected in message, message
    no_rows = write_frame(pd.DataFrame({"a": pd.Series([], dtype="float64")}), tmp_path / "none.parquet")
    assert "no data (no rows)" in _one_line_error(read_frame, str(no_rows))
