"""A small shipping model in a fresh home, and logged predictions and feedback for it without a server.

The log rows are written through the monitoring layer's store (`ParquetStore` under
`<home>/predictions`, where `layerops drift` and `layerops.retrain` read them), with the model's
own predictions (`layerops.load`); labels go in through `layerops.feedback`, as a client's would.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

import layerops
from layerops.datasets import shipping
from layerops.monitoring.parquet_store import ParquetStore
from layerops.monitoring.records import input_column

SPEC = """
name: shipping
description: shipping cost, retrained by the tests
data: {path: shipping.csv}
target: cost
task: regression
candidates:
  - name: baseline
  - name: linear
tuning: {trials: 2, cv_folds: 0}
"""
FEATURES = ["length", "width", "height", "weight", "origin", "destination", "service_level"]
NUMERIC = {"length", "width", "height", "weight"}
TRAINING = shipping(1500, seed=1)
"""The rows version 1 (production) is trained on."""


def registered_home(folder: Path) -> Path:
    """`folder` with shipping.csv, spec.yaml and home/: shipping v1 trained and promoted to production."""
    folder.mkdir(parents=True, exist_ok=True)
    TRAINING.to_csv(folder / "shipping.csv", index=False)
    (folder / "spec.yaml").write_text(SPEC, encoding="utf-8")
    home = folder / "home"
    layerops.train(folder / "spec.yaml", alias="production", home=home, jobs=1)
    return home


def shifted(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with `weight` moved by half the training standard deviation and the most and least
    frequent service levels swapped (the drift `tests/monitoring/test_server_drift.py` finds)."""
    out = frame.copy()
    out["weight"] = out["weight"] + 0.5 * TRAINING["weight"].std()
    shares = TRAINING["service_level"].value_counts()
    most, least = shares.index[0], shares.index[-1]
    out["service_level"] = out["service_level"].map(
        lambda v: least if v == most else most if v == least else v
    )
    return out


def log_predictions(home: Path, frame: pd.DataFrame, *, version: int = 1, prefix: str = "r") -> list[str]:
    """Log `frame`'s rows as served by shipping `version` in the last hour (one request per row,
    ids `<prefix><i>`); their request ids."""
    model = layerops.load(f"shipping@{version}", engine="native", home=home)
    predictions = np.asarray(model.predict(frame[FEATURES]), dtype=float)
    now = datetime.now(UTC)
    times = [now - timedelta(hours=1) + timedelta(seconds=i) for i in range(len(frame))]
    ids = [f"{prefix}{i}" for i in range(len(frame))]
    columns: dict[str, pa.Array] = {
        "request_id": pa.array(ids, pa.string()),
        "row": pa.array([0] * len(frame), pa.int32()),
        "time": pa.array(times, pa.timestamp("us", tz="UTC")),
        "model": pa.array(["shipping"] * len(frame), pa.string()),
        "version": pa.array([version] * len(frame), pa.int32()),
        "variant": pa.array([None] * len(frame), pa.string()),
        "latency_ms": pa.array([1.0] * len(frame), pa.float64()),
        "prediction": pa.array(predictions, pa.float64()),
    }
    for feature in FEATURES:
        values = frame[feature].tolist()
        kind = pa.float64() if feature in NUMERIC else pa.string()
        columns[input_column(feature)] = pa.array(values, kind)
    store = ParquetStore(home / "predictions")
    try:
        store.write("shipping", pa.table(columns))
    finally:
        store.close()
    return ids


def give_feedback(home: Path, ids: list[str], labels: pd.Series) -> int:
    """Store `labels` (true costs) for the logged requests `ids`; how many were stored."""
    frame = pd.DataFrame({"request_id": ids, "label": labels.to_numpy(dtype=float)})
    result = layerops.feedback("shipping", frame, home=home)
    assert not result.rejected, result.rejected[:3]
    return result.stored
