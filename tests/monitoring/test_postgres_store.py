"""The PostgreSQL prediction log against a real server: round trips, atomic batches, fast failure."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from layerops.monitoring.postgres_store import PostgresStore
from layerops.monitoring.records import BASE_COLUMNS, FEEDBACK_COLUMNS, Window
from layerops.monitoring.store import LogStore, SinkError
from tests.conftest import POSTGRES_SERVER, fresh_postgres_database
from tests.monitoring.test_parquet_store import START, make_batch

pytestmark = pytest.mark.postgres

SERVER = POSTGRES_SERVER


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A fresh database `layerops_test_<random>` for this module, dropped afterwards (the pattern of
    tests/repository/test_postgres.py, at module scope: creating a database takes a while)."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def store(database: str) -> Iterator[PostgresStore]:
    """A store on its own pair of tables, so that tests sharing the database do not see each other."""
    suffix = secrets.token_hex(4)
    store = PostgresStore(database, table=f"log_{suffix}", feedback_table=f"feedback_{suffix}")
    yield store
    store.close()


def test_classification_round_trip_matches_the_parquet_layout(store: PostgresStore) -> None:
    batch = make_batch(10)
    store.write("m", batch.slice(0, 6))
    store.write("m", batch.slice(6))
    store.flush()

    frame = store.read("m", Window())

    assert isinstance(store, LogStore)
    assert list(frame.columns[: len(BASE_COLUMNS)]) == list(BASE_COLUMNS)
    assert sorted(frame.columns[len(BASE_COLUMNS) :]) == [
        "input.length",
        "input.origin",
        "proba.no",
        "proba.yes",
    ]
    expected = batch.to_pandas()
    pd.testing.assert_frame_equal(frame, expected[frame.columns])
    assert frame["input.length"].dtype == np.float64 and frame["input.length"].isna().sum() == 4
    assert frame["input.origin"].isna().sum() == 4 and frame["variant"].isna().sum() == 5


def test_regression_round_trip_and_windows(store: PostgresStore) -> None:
    store.write("price", make_batch(20, regression=True, features=("length",)))
    store.write("price", make_batch(5, START + timedelta(days=1), regression=True, prefix="late"))

    everything = store.read("price", Window())
    last = store.read("price", Window(last=3))
    since = store.read("price", Window(since=START + timedelta(seconds=18)))
    until = store.read("price", Window(until=START + timedelta(seconds=2)))

    assert everything["prediction"].dtype == np.float64 and everything["time"].is_monotonic_increasing
    assert everything["prediction"].tolist()[:20] == [0.25 * i for i in range(20)]
    assert last["request_id"].tolist() == ["late1", "late1", "late2"]
    assert len(since) == 7 and len(until) == 2
    assert str(everything["time"].dtype) == "datetime64[us, UTC]"
    empty = store.read("nothing", Window())
    assert empty.empty and list(empty.columns) == list(BASE_COLUMNS)
    assert store.models() == ["price"]


def test_a_batch_with_a_bad_row_leaves_nothing(store: PostgresStore) -> None:
    good = make_batch(6)
    bad_ids = pa.array(["r0", "r0", None, "r1", "r2", "r2"], pa.string())  # request_id is NOT NULL
    bad = good.set_column(0, "request_id", bad_ids)

    with pytest.raises(SinkError, match="cannot write 6 logged rows") as failed:
        store.write("m", bad)

    assert "\n" not in str(failed.value)
    assert store.read("m", Window()).empty
    store.write("m", good)
    assert len(store.read("m", Window())) == 6


def test_find_requests_and_feedback_round_trip(store: PostgresStore) -> None:
    store.write("m", make_batch(6))
    labels = pd.DataFrame(
        {"request_id": ["r0", "r1"], "row": [0, 1], "label": ["yes", "no"], "time": [START, START]}
    )
    values = pd.DataFrame({"request_id": ["r2"], "row": [0], "label": [3.5], "time": [START]})
    store.write_feedback("m", labels)
    store.write_feedback("price", values)

    clf, reg = store.read_feedback("m"), store.read_feedback("price")

    assert store.find_requests("m", ["r0", "r2", "r9"]) == {"r0", "r2"}
    assert store.find_requests("other", ["r0"]) == set()
    assert list(clf.columns) == list(FEEDBACK_COLUMNS) and clf["label"].tolist() == ["yes", "no"]
    assert reg["label"].dtype == np.float64 and reg["label"].tolist() == [3.5]
    assert str(reg["time"].dtype) == "datetime64[us, UTC]" and clf["row"].dtype == np.int32
    assert store.read_feedback("none").columns.tolist() == list(FEEDBACK_COLUMNS)


def test_two_stores_create_the_same_tables_at_once(database: str) -> None:
    suffix = secrets.token_hex(4)
    stores = [
        PostgresStore(database, table=f"race_{suffix}", feedback_table=f"racefb_{suffix}") for _ in range(4)
    ]
    errors: list[BaseException] = []

    def first_write(store: PostgresStore, index: int) -> None:
        try:
            store.write("m", make_batch(2, prefix=f"s{index}-"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_write, args=(s, i)) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(stores[0].read("m", Window())) == 8
    for store in stores:
        store.close()


def test_an_unreachable_database_fails_fast_with_a_redacted_sink_error() -> None:
    store = PostgresStore("postgresql://postgres:s3cret@127.0.0.1:1/nowhere")
    started = time.monotonic()

    with pytest.raises(SinkError) as failed:
        store.write("m", make_batch(2))

    assert time.monotonic() - started < 5
    assert "s3cret" not in str(failed.value) and "s3cret" not in repr(store)
    assert "127.0.0.1:1" in str(failed.value)
    store.close()


def test_bad_table_names_are_refused() -> None:
    with pytest.raises(SinkError, match="bad PostgreSQL table name"):
        PostgresStore(f"{SERVER}/postgres", table="log; DROP TABLE x")


def test_awkward_text_and_a_feature_that_changed_kind_round_trip(store: PostgresStore) -> None:
    awkward = ['say "hi"', "back\\slash", "tab\there", "é ∑ 日本", None]
    batch = make_batch(5, features=("length",)).append_column('input.ori"gin', pa.array(awkward, pa.string()))
    store.write("m", batch.append_column("input.code", pa.array([1.0, np.nan, 3.0, None, 5.0])))
    store.write(
        "m", make_batch(2, START + timedelta(minutes=1)).append_column("input.code", pa.array(["a", "b"]))
    )

    frame = store.read("m", Window())

    assert frame['input.ori"gin'].iloc[:5].tolist()[:4] == awkward[:4] and pd.isna(
        frame['input.ori"gin'].iloc[4]
    )
    codes = frame["input.code"]  # numbers then text: read back as text
    assert codes.iloc[[0, 2, 5, 6]].tolist() == ["1", "3", "a", "b"] and codes.iloc[[1, 3]].isna().all()
