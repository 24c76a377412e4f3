"""The Parquet prediction log: round trips, windows, rotation, partitions, damaged files, feedback."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from layerops.monitoring import parquet_store
from layerops.monitoring.parquet_store import ParquetStore, model_folder
from layerops.monitoring.postgres_store import PostgresStore
from layerops.monitoring.records import BASE_COLUMNS, FEEDBACK_COLUMNS, Window
from layerops.monitoring.store import LogStore, SinkError, open_store

START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def make_batch(
    n: int,
    start: datetime = START,
    *,
    regression: bool = False,
    prefix: str = "r",
    features: Sequence[str] = ("length", "origin"),
    step: timedelta = timedelta(seconds=1),
) -> pa.Table:
    """`n` logged rows, two per request, one `step` apart from `start`; every 3rd input missing."""
    times = [start + i * step for i in range(n)]
    columns: dict[str, pa.Array] = {
        "request_id": pa.array([f"{prefix}{i // 2}" for i in range(n)], pa.string()),
        "row": pa.array([i % 2 for i in range(n)], pa.int32()),
        "time": pa.array(times, pa.timestamp("us", tz="UTC")),
        "model": pa.array(["m"] * n, pa.string()),
        "version": pa.array([2] * n, pa.int32()),
        "variant": pa.array([None if i % 2 else "b" for i in range(n)], pa.string()),
        "latency_ms": pa.array([1.5 + i for i in range(n)], pa.float64()),
    }
    if regression:
        columns["prediction"] = pa.array([0.25 * i for i in range(n)], pa.float64())
    else:
        columns["prediction"] = pa.array(["yes" if i % 3 else "no" for i in range(n)], pa.string())
        columns["proba.no"] = pa.array([0.1] * n, pa.float64())
        columns["proba.yes"] = pa.array([0.9] * n, pa.float64())
    for feature in features:
        if feature == "origin":
            values: list[object] = [None if i % 3 == 0 else f"city{i % 4}" for i in range(n)]
            columns[f"input.{feature}"] = pa.array(values, pa.string())
        else:
            columns[f"input.{feature}"] = pa.array([None if i % 3 == 0 else float(i) for i in range(n)])
    return pa.table(columns)


@pytest.fixture
def store(tmp_path: Path) -> ParquetStore:
    return ParquetStore(tmp_path / "log")


def final_files(root: Path) -> list[Path]:
    return sorted(root.rglob("date=*/part-*.parquet"))


def test_classification_round_trip_keeps_values_types_and_nulls(store: ParquetStore) -> None:
    batch = make_batch(10)
    store.write("m", batch.slice(0, 6))
    store.write("m", batch.slice(6))
    store.flush()

    frame = store.read("m", Window())

    assert isinstance(store, LogStore)
    assert list(frame.columns) == [*BASE_COLUMNS, "proba.no", "proba.yes", "input.length", "input.origin"]
    expected = batch.to_pandas()
    pd.testing.assert_frame_equal(frame, expected[frame.columns])
    assert str(frame["time"].dtype) == "datetime64[us, UTC]"
    assert frame["row"].dtype == np.int32 and frame["version"].dtype == np.int32
    assert frame["input.length"].isna().sum() == 4 and frame["input.origin"].isna().sum() == 4
    assert frame["variant"].isna().sum() == 5
    assert len(final_files(store.root)) == 1


def test_regression_round_trip_keeps_a_float_prediction(store: ParquetStore) -> None:
    store.write("price", make_batch(8, regression=True, features=("length",)))
    store.close()

    frame = store.read("price", Window())

    assert frame["prediction"].dtype == np.float64
    assert frame["prediction"].tolist() == [0.25 * i for i in range(8)]
    assert [c for c in frame.columns if "." in c] == ["input.length"]


def test_a_batch_from_pandas_is_stored_in_the_canonical_types(store: ParquetStore) -> None:
    frame = make_batch(6).to_pandas()
    frame["time"] = frame["time"].dt.as_unit("ns")
    frame["row"] = frame["row"].astype("int64")
    store.write("m", pa.Table.from_pandas(frame, preserve_index=False))
    store.write("m", make_batch(6, START + timedelta(minutes=1)))
    store.flush()

    assert len(final_files(store.root)) == 1  # one schema: both batches share the open file
    read = store.read("m", Window())
    assert len(read) == 12 and read["row"].dtype == np.int32


def test_windows_select_the_last_rows_and_a_time_range_in_time_order(store: ParquetStore) -> None:
    store.write("m", make_batch(50, START + timedelta(days=1), prefix="late"))
    store.write("m", make_batch(50, START, prefix="early"))
    store.flush()

    everything = store.read("m", Window())
    last = store.read("m", Window(last=7))
    since = store.read("m", Window(since=START + timedelta(days=1, seconds=45)))
    until = store.read("m", Window(until=START + timedelta(seconds=3)))
    both = store.read("m", Window(last=3, until=START + timedelta(seconds=10)))

    assert everything["time"].is_monotonic_increasing and len(everything) == 100
    assert last["time"].tolist() == everything["time"].tolist()[-7:]
    assert len(since) == 5 and since["time"].min() == pd.Timestamp(START + timedelta(days=1, seconds=45))
    assert len(until) == 3 and until["request_id"].tolist() == ["early0", "early0", "early1"]
    assert both["time"].tolist() == [pd.Timestamp(START + timedelta(seconds=s)) for s in (7, 8, 9)]


def test_an_empty_window_or_an_unknown_model_gives_the_base_columns(store: ParquetStore) -> None:
    store.write("m", make_batch(4))
    store.flush()

    for frame in (store.read("other", Window()), store.read("m", Window(since=START + timedelta(days=9)))):
        assert frame.empty and list(frame.columns) == list(BASE_COLUMNS)
        assert str(frame["time"].dtype) == "datetime64[us, UTC]"


def test_files_rotate_at_the_size_threshold(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path / "log", rotate_bytes=1)

    for i in range(3):
        store.write("m", make_batch(10, START + timedelta(minutes=i)))
        assert len(final_files(store.root)) == i + 1  # readable without a flush

    assert len(store.read("m", Window())) == 30


def test_files_rotate_after_rotate_seconds(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path / "log", rotate_seconds=0.05)
    store.write("m", make_batch(10))
    assert final_files(store.root) == []

    store.rotate_due()
    assert final_files(store.root) == []  # not old enough yet
    store._open[next(iter(store._open))].opened -= 1.0  # age the open file instead of sleeping
    store.write("m", make_batch(10, START + timedelta(minutes=1)))  # a write closes the aged file

    assert len(final_files(store.root)) == 1
    store.flush()
    assert len(final_files(store.root)) == 2


def test_a_new_schema_starts_a_new_file_and_reads_take_the_union_of_columns(store: ParquetStore) -> None:
    store.write("m", make_batch(4, features=("length", "origin")))
    store.write("m", make_batch(4, START + timedelta(minutes=1), features=("length", "weight"), prefix="v2"))
    store.flush()

    frame = store.read("m", Window())

    assert len(final_files(store.root)) == 2
    assert [c for c in frame.columns if c.startswith("input.")] == [
        "input.length",
        "input.origin",
        "input.weight",
    ]
    assert frame["input.weight"].iloc[:4].isna().all() and frame["input.origin"].iloc[4:].isna().all()
    assert frame["input.weight"].iloc[5] == 1.0


def test_a_batch_spanning_midnight_is_split_into_both_days(store: ParquetStore) -> None:
    start = datetime(2026, 1, 5, 23, 59, 58, tzinfo=UTC)
    store.write("m", make_batch(4, start))
    store.flush()

    days = sorted(p.parent.name for p in final_files(store.root))
    frame = store.read("m", Window())

    assert days == ["date=2026-01-05", "date=2026-01-06"]
    assert frame["time"].tolist() == [pd.Timestamp(start + timedelta(seconds=s)) for s in range(4)]
    assert len(store.read("m", Window(since=datetime(2026, 1, 6, tzinfo=UTC)))) == 2


def test_files_are_a_hive_dataset_for_pyarrow_and_pandas(store: ParquetStore) -> None:
    store.write("m", make_batch(6))
    store.write("m", make_batch(6, START + timedelta(days=1)))
    store.flush()
    store.write_feedback(
        "m", pd.DataFrame({"request_id": ["r0"], "row": [0], "label": ["yes"], "time": [START]})
    )
    store.write("m", make_batch(3, START + timedelta(days=2)))  # left open: an in-progress file

    table = ds.dataset(store.root / "m", partitioning="hive").to_table()
    frame = pd.read_parquet(store.root / "m")

    assert table.num_rows == 12 and len(frame) == 12
    assert sorted(set(table["date"].to_pylist())) == ["2026-01-05", "2026-01-06"]
    assert list(store.root.rglob("_part-*.parquet.inprogress"))


def test_a_truncated_file_is_skipped_with_a_warning_naming_it(
    store: ParquetStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.write("m", make_batch(5, prefix="lost"))
    store.flush()
    store.write("m", make_batch(5, START + timedelta(minutes=1), prefix="kept"))
    store.flush()
    broken = next(p for p in final_files(store.root) if "lost0" in pd.read_parquet(p)["request_id"].tolist())
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])

    with caplog.at_level(logging.WARNING, logger="layerops.monitoring.parquet_store"):
        frame = store.read("m", Window())

    assert set(frame["request_id"]) == {"kept0", "kept1", "kept2"}
    assert str(broken) in caplog.text
    assert store.find_requests("m", ["kept1", "lost1"]) == {"kept1"}


def test_an_in_progress_file_is_invisible_to_readers_until_flushed(store: ParquetStore) -> None:
    store.write("m", make_batch(4))
    other_process = ParquetStore(store.root)

    assert other_process.read("m", Window()).empty
    assert list(store.root.rglob("_part-*.parquet.inprogress"))
    store.flush()
    assert len(other_process.read("m", Window())) == 4
    assert not list(store.root.rglob("*.inprogress"))


def test_find_requests_sees_open_and_closed_files_of_that_model_only(store: ParquetStore) -> None:
    store.write("m", make_batch(4, prefix="closed"))
    store.flush()
    store.write("m", make_batch(4, START + timedelta(minutes=1), prefix="open"))
    store.write("other", make_batch(4, prefix="elsewhere"))

    found = store.find_requests("m", ["open1", "closed0", "elsewhere0", "nope"])

    assert found == {"open1", "closed0"}
    assert ParquetStore(store.root).find_requests("m", ["open1", "closed0"]) == {"closed0"}
    assert store.find_requests("m", []) == set()
    assert store.models() == ["m", "other"]


def test_feedback_round_trips_for_both_task_kinds(store: ParquetStore) -> None:
    labels = pd.DataFrame(
        {"request_id": ["r0", "r1"], "row": [0, 1], "label": ["yes", "no"], "time": [START, START]}
    )
    values = pd.DataFrame(
        {"request_id": ["r2"], "row": [0], "label": [3.5], "time": [START + timedelta(hours=1)]}
    )
    store.write_feedback("clf", labels)
    store.write_feedback("clf", labels.assign(time=START + timedelta(minutes=5), request_id=["r5", "r6"]))
    store.write_feedback("reg", values)

    clf, reg = store.read_feedback("clf"), store.read_feedback("reg")

    assert list(clf.columns) == list(FEEDBACK_COLUMNS) and len(clf) == 4
    assert clf["label"].tolist() == ["yes", "no", "yes", "no"] and clf["row"].dtype == np.int32
    assert reg["label"].dtype == np.float64 and reg["label"].tolist() == [3.5]
    assert str(reg["time"].dtype) == "datetime64[us, UTC]"
    assert store.read_feedback("none").columns.tolist() == list(FEEDBACK_COLUMNS)
    assert store.models() == []  # feedback alone is no prediction log
    with pytest.raises(SinkError, match="label"):
        store.write_feedback("clf", labels.drop(columns="label"))


@pytest.mark.parametrize("name", ["", ".", ".."])
def test_a_model_name_that_cannot_be_a_folder_is_refused(store: ParquetStore, name: str) -> None:
    with pytest.raises(SinkError, match="bad model name"):
        store.write(name, make_batch(2))


def test_unsafe_model_names_are_encoded_inside_the_root(store: ParquetStore) -> None:
    names = ["../escape", "a/b", "prix en €", "ok_name-1.2"]
    for name in names:
        store.write(name, make_batch(2))
    store.flush()

    folders = sorted(p.name for p in store.root.iterdir())
    assert folders == sorted(model_folder(n) for n in names)
    assert "..%2Fescape" in folders and "ok_name-1.2" in folders
    assert all(p.resolve().is_relative_to(store.root.resolve()) for p in store.root.rglob("*"))
    assert store.models() == sorted(names)
    assert len(store.read("prix en €", Window())) == 2


def test_a_failed_write_leaves_nothing_visible_and_the_retry_succeeds(
    store: ParquetStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def disk_full(self: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(parquet_store.OpenFile, "write_pending", disk_full)
        patch.setattr(parquet_store, "ROW_GROUP_ROWS", 1)  # write each batch through at once
        with pytest.raises(SinkError, match="No space left"), caplog.at_level(logging.ERROR):
            store.write("m", make_batch(4))
        patch.setattr(parquet_store, "ROW_GROUP_ROWS", 1000)
        store.write("m", make_batch(4, prefix="buffered"))
        with pytest.raises(SinkError, match="No space left"):
            store.flush()  # the buffered rows fail when the file is closed: lost, and logged
    assert final_files(store.root) == [] and len(list(store.root.rglob("*.failed"))) == 2
    assert "4 logged rows lost" in caplog.text

    store.write("m", make_batch(4))
    store.close()
    store.close()
    assert len(store.read("m", Window())) == 4
    with pytest.raises(SinkError, match="closed"):
        store.write("m", make_batch(4))


def test_a_batch_without_time_is_refused(store: ParquetStore) -> None:
    batch = make_batch(3)
    with pytest.raises(SinkError, match="without a time"):
        store.write("m", batch.set_column(2, "time", pa.nulls(3, pa.timestamp("us", tz="UTC"))))
    with pytest.raises(SinkError, match="lacks the column"):
        store.write("m", batch.drop_columns(["request_id"]))


def test_open_store_picks_the_store_from_the_target(tmp_path: Path) -> None:
    default = open_store(None, tmp_path)
    folder = open_store(str(tmp_path / "elsewhere"), tmp_path)
    url = open_store(f"file://{tmp_path}/by%20url", tmp_path)
    database = open_store("postgresql://user:s3cret@db.example:5432/logs", tmp_path)

    assert isinstance(default, ParquetStore) and default.root == tmp_path / "predictions"
    assert isinstance(folder, ParquetStore) and folder.root == tmp_path / "elsewhere"
    assert isinstance(url, ParquetStore) and url.root == tmp_path / "by url"
    assert isinstance(database, PostgresStore) and database.url.drivername == "postgresql+psycopg"
    assert "s3cret" not in repr(database) and "db.example" in repr(database)
    database.close()
    with pytest.raises(SinkError, match="file:///path or postgresql://") as refused:
        open_store("s3://key:s3cret@bucket/log", tmp_path)
    assert "s3cret" not in str(refused.value) and "\n" not in str(refused.value)


def test_last_rows_across_overlapping_files_of_two_processes(tmp_path: Path) -> None:
    first, second = ParquetStore(tmp_path / "log"), ParquetStore(tmp_path / "log")
    first.write("m", make_batch(40, step=timedelta(seconds=2), prefix="a"))
    second.write("m", make_batch(40, START + timedelta(seconds=1), step=timedelta(seconds=2), prefix="b"))
    first.flush()
    second.flush()

    everything = first.read("m", Window())
    last = first.read("m", Window(last=5))

    assert everything["time"].is_monotonic_increasing and len(everything) == 80
    assert last["request_id"].tolist() == ["b18", "a19", "b19", "a19", "b19"]
    pd.testing.assert_frame_equal(last.reset_index(drop=True), everything.tail(5).reset_index(drop=True))


def test_a_feature_that_changed_kind_between_files_is_read_as_text(store: ParquetStore) -> None:
    numbers = make_batch(3, features=()).append_column("input.code", pa.array([1.5, None, 3.0]))
    store.write("m", numbers)
    store.write(
        "m",
        make_batch(2, START + timedelta(minutes=1), features=()).append_column(
            "input.code", pa.array(["a", "b"])
        ),
    )
    store.flush()

    codes = store.read("m", Window())["input.code"]

    assert codes.iloc[[0, 2, 3, 4]].tolist() == ["1.5", "3", "a", "b"] and pd.isna(codes.iloc[1])
