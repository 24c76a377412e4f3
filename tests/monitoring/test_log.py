"""The prediction log's queue and writer: nothing blocks, nothing is lost silently, close flushes."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from layerops.bundle import FeatureSchema
from layerops.monitoring.entries import ColumnRows, Entry, build_table
from layerops.monitoring.log import LogSettings, PredictionLog
from layerops.monitoring.parquet_store import ParquetStore
from layerops.monitoring.records import Window
from layerops.monitoring.store import SinkError

FEATURES = (
    FeatureSchema(name="x", dtype="float"),
    FeatureSchema(name="n", dtype="int"),
    FeatureSchema(name="colour", dtype="category", categories=["red", "blue"], required=False),
)
CLASSES = ("no", "yes")


def entry(request_id: str, rows: int = 1, *, model: str = "m", version: int = 1, seed: int = 0) -> Entry:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 1))
    colour = np.array([["red"], [""], ["blue"]] * rows, dtype=object)[:rows]
    proba = rng.uniform(size=rows)
    return Entry(
        model=model,
        version=version,
        variant=None,
        request_id=request_id,
        time=time.time(),
        latency_ms=0.5,
        rows=rows,
        inputs=ColumnRows(
            {"x": x, "n": np.arange(rows, dtype=np.float32).reshape(-1, 1), "colour": colour}, rows
        ),
        features=FEATURES,
        values=(proba > 0.5).astype(np.int64),
        probabilities=np.column_stack([1 - proba, proba]),
        classes=CLASSES,
    )


class FlakyStore(ParquetStore):
    """A real Parquet store that refuses its first `failures` writes (a database that comes back)."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures
        self.attempts = 0

    def write(self, model: str, batch: pa.Table) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise SinkError("store down")
        super().write(model, batch)


class BlockedStore(ParquetStore):
    """A store whose writes hang until released (a sink that stopped answering)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.release = threading.Event()

    def write(self, model: str, batch: pa.Table) -> None:
        if not self.release.wait(30):
            raise SinkError("timed out")
        super().write(model, batch)


def test_every_row_reaches_the_store_in_the_log_layout(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    prediction_log = PredictionLog(store, LogSettings(flush_seconds=0.05))
    for i in range(50):
        assert prediction_log.record(entry(f"r{i}", rows=1 + i % 3, seed=i))
    prediction_log.close()

    frame = store.read("m", Window())
    assert len(frame) == sum(1 + i % 3 for i in range(50))
    assert prediction_log.stats().written_rows == len(frame)
    first = frame[frame["request_id"] == "r2"].sort_values("row")
    assert first["row"].tolist() == [0, 1, 2]
    assert first["input.n"].tolist() == [0.0, 1.0, 2.0]
    # ONNX's empty text for a missing category is logged as null
    assert first["input.colour"].iloc[0] == "red" and pd.isna(first["input.colour"].iloc[1])
    probabilities = first[["proba.no", "proba.yes"]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert first["prediction"].tolist() == [CLASSES[int(p > 0.5)] for p in first["proba.yes"]]
    assert str(frame["time"].dtype).startswith("datetime64") and frame["version"].eq(1).all()


def test_a_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    store = BlockedStore(tmp_path)
    prediction_log = PredictionLog(store, LogSettings(capacity_rows=100, batch_rows=10, flush_seconds=0.01))
    started = time.perf_counter()
    accepted = sum(prediction_log.record(entry(f"r{i}")) for i in range(1000))
    elapsed = time.perf_counter() - started
    stats = prediction_log.stats()

    assert elapsed < 5  # the store hangs for 30 s: the request path never waited for it
    assert accepted <= 100 + 10  # the cap, plus at most the one batch the writer holds
    assert stats.dropped_rows["m"] == 1000 - accepted
    store.release.set()
    prediction_log.close()
    assert len(store.read("m", Window())) == accepted


def test_a_failing_store_is_retried_and_counted(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path, failures=3)
    prediction_log = PredictionLog(store, LogSettings(flush_seconds=0.01, max_backoff_seconds=0.05))
    for i in range(20):
        prediction_log.record(entry(f"r{i}"))
    assert prediction_log.flush(timeout=10)
    stats = prediction_log.stats()
    assert stats.failed_batches == 3
    assert stats.written_rows == 20 and not stats.dropped_rows
    prediction_log.close()


def test_close_writes_every_queued_row(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path, failures=2)
    settings = LogSettings(batch_rows=100_000, flush_seconds=60, max_backoff_seconds=0.05)
    prediction_log = PredictionLog(store, settings)
    for i in range(5000):
        prediction_log.record(entry(f"r{i}"))
    prediction_log.close()  # the writer has not written anything yet: close must
    assert len(store.read("m", Window())) == 5000
    assert not prediction_log.record(entry("late"))  # closed: refused and counted
    assert prediction_log.stats().dropped_rows == {"m": 1}


def test_a_store_still_down_at_close_counts_the_loss(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path, failures=10**9)
    prediction_log = PredictionLog(store, LogSettings(close_timeout=0.3, max_backoff_seconds=0.05))
    for i in range(7):
        prediction_log.record(entry(f"r{i}"))
    prediction_log.close()
    assert prediction_log.stats().dropped_rows == {"m": 7}


def test_sampling_is_by_request_id(tmp_path: Path) -> None:
    settings = LogSettings(sample_rate=0.25, sample_rates={"all": 1.0}, flush_seconds=0.01)
    prediction_log = PredictionLog(ParquetStore(tmp_path), settings)
    kept = [prediction_log.record(entry(f"r{i}")) for i in range(4000)]
    again = [prediction_log.record(entry(f"r{i}")) for i in range(4000)]
    assert kept == again
    assert 0.2 < sum(kept) / len(kept) < 0.3
    assert all(prediction_log.record(entry(f"r{i}", model="all")) for i in range(100))
    prediction_log.close()


def test_recent_rows_are_capped_per_version(tmp_path: Path) -> None:
    settings = LogSettings(recent_rows=30, flush_seconds=0.01, batch_rows=8)
    prediction_log = PredictionLog(ParquetStore(tmp_path), settings)
    for i in range(100):
        prediction_log.record(entry(f"a{i}", version=1))
        prediction_log.record(entry(f"b{i}", version=2))
    assert prediction_log.flush(timeout=10)
    recent: pd.DataFrame = prediction_log.recent("m", 1)
    assert 30 <= len(recent) < 30 + 16
    assert recent["version"].eq(1).all() and recent["request_id"].iloc[-1] == "a99"
    assert prediction_log.recent("m", 3).empty
    prediction_log.close()


def test_entries_of_two_versions_with_other_features_share_one_table() -> None:
    table = build_table([entry("a"), _without_colour(entry("b", version=2))])
    frame = table.to_pandas()
    assert frame["version"].tolist() == [1, 2]
    assert frame["input.colour"].iloc[0] == "red" and pd.isna(frame["input.colour"].iloc[1])


def _fields(item: Entry) -> dict[str, Any]:
    return {name: getattr(item, name) for name in Entry.__slots__}


def _without_colour(item: Entry) -> Entry:
    fields = _fields(item)
    inputs = item.inputs.columns
    fields["inputs"] = ColumnRows({k: v for k, v in inputs.items() if k != "colour"}, item.rows)
    fields["features"] = FEATURES[:2]
    return Entry(**fields)


def test_numeric_blocks_are_stacked_once_and_match_their_columns() -> None:
    from layerops.delivery.feeds import Feeds

    numeric = (FeatureSchema(name="a", dtype="float"), FeatureSchema(name="b", dtype="int"))
    blocks = [np.array([[1.5, 2.0]], dtype=np.float32), np.array([[3.0, 4.0], [5.0, np.nan]], np.float32)]

    def item(request_id: str, block: np.ndarray) -> Entry:
        fields = _fields(entry(request_id, rows=len(block)))
        fields.update(inputs=Feeds.numeric(block, ("a", "b")), features=numeric, rows=len(block))
        return Entry(**fields)

    frame = build_table([item("p", blocks[0]), item("q", blocks[1])]).to_pandas()
    assert frame["input.a"].tolist() == [1.5, 3.0, 5.0]
    assert frame["input.b"].iloc[:2].tolist() == [2.0, 4.0] and np.isnan(frame["input.b"].iloc[2])
    assert frame["request_id"].tolist() == ["p", "q", "q"] and frame["row"].tolist() == [0, 0, 1]
    # the same rows as columns (the general path) give the same table
    columns = [ColumnRows(Feeds.numeric(b, ("a", "b")).columns, len(b)) for b in blocks]
    general = build_table(
        [Entry(**{**_fields(item(r, b)), "inputs": c}) for r, b, c in zip("pq", blocks, columns, strict=True)]
    ).to_pandas()
    pd.testing.assert_frame_equal(frame.drop(columns="time"), general.drop(columns="time"))
