"""Quality metrics, inference latency and resource use of a candidate."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd
import psutil
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

from layerops.spec import LOWER_IS_BETTER, Task


def predict_outputs(
    model: Any, x: pd.DataFrame | np.ndarray, task: Task
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions and, for classifiers, class probabilities."""
    if task == "classification":
        proba = np.asarray(model.predict_proba(x), dtype=np.float64)
        return proba.argmax(axis=1), proba
    return np.asarray(model.predict(x), dtype=np.float64), None


def score(task: Task, y_true: np.ndarray, pred: np.ndarray, proba: np.ndarray | None) -> dict[str, float]:
    """Every quality metric of the task; a metric undefined on this data is left out."""
    if task == "regression":
        return {
            "rmse": float(math.sqrt(mean_squared_error(y_true, pred))),
            "mae": float(mean_absolute_error(y_true, pred)),
            "r2": float(r2_score(y_true, pred)) if len(y_true) > 1 else float("nan"),
        }
    assert proba is not None
    labels = list(range(proba.shape[1]))
    metrics = {
        "accuracy": float(accuracy_score(y_true, pred)),
        "f1_macro": float(f1_score(y_true, pred, average="macro", labels=labels, zero_division=0)),
        # float32 models' rows sum to 1 only within ~1e-7: normalise so log_loss does not warn
        "log_loss": float(log_loss(y_true, proba / proba.sum(axis=1, keepdims=True), labels=labels)),
    }
    if len(np.unique(y_true)) == proba.shape[1]:
        if proba.shape[1] == 2:
            metrics["roc_auc"] = float(roc_auc_score(y_true, proba[:, 1]))
        else:
            metrics["roc_auc"] = float(roc_auc_score(y_true, proba, multi_class="ovr", average="macro"))
    return {k: v for k, v in metrics.items() if not math.isnan(v)}


def better(metric: str, a: float, b: float) -> bool:
    """True when value `a` of `metric` beats `b`."""
    return a < b if metric in LOWER_IS_BETTER else a > b


def sort_key(metric: str, value: float | None) -> float:
    """Ascending sort key that puts the best value of `metric` first and missing values last."""
    if value is None or math.isnan(value):
        return math.inf
    return value if metric in LOWER_IS_BETTER else -value


def _percentiles(samples: list[float]) -> tuple[float, float]:
    arr = np.asarray(samples) * 1000.0
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def measure_latency(
    model: Any,
    x: pd.DataFrame,
    task: Task,
    *,
    single_rows: int = 30,
    batch_rows: int = 1000,
    repeats: int = 3,
) -> dict[str, float]:
    """p50/p99 latency in ms of one-row calls and of one batch call, native model, one process."""
    call = model.predict_proba if task == "classification" else model.predict
    rows = x.head(max(1, min(single_rows, len(x))))
    call(rows.iloc[[0]])  # warm caches before timing
    single: list[float] = []
    for i in range(single_rows):
        row = rows.iloc[[i % len(rows)]]
        start = time.perf_counter()
        call(row)
        single.append(time.perf_counter() - start)
    batch_frame = (
        x.sample(n=batch_rows, replace=True, random_state=0) if len(x) < batch_rows else x.head(batch_rows)
    )
    batch: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(batch_frame)
        batch.append(time.perf_counter() - start)
    single_p50, single_p99 = _percentiles(single)
    batch_p50, batch_p99 = _percentiles(batch)
    return {
        "single_row_p50_ms": single_p50,
        "single_row_p99_ms": single_p99,
        "batch_p50_ms": batch_p50,
        "batch_p99_ms": batch_p99,
        "batch_rows": float(len(batch_frame)),
    }


@dataclass
class ResourceMonitor:
    """Samples this process's RSS and CPU use in a background thread while the block runs."""

    interval: float = 0.05
    peak_rss_mb: float = 0.0
    cpu_percent: float = 0.0
    seconds: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __enter__(self) -> ResourceMonitor:
        self._process = psutil.Process()
        self._cpu_start = self._process.cpu_times()
        self._start = time.perf_counter()
        self.peak_rss_mb = self._process.memory_info().rss / 2**20
        self._thread = threading.Thread(target=self._sample, name="layerops-resources", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_rss_mb = max(self.peak_rss_mb, self._process.memory_info().rss / 2**20)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_rss_mb = max(self.peak_rss_mb, self._process.memory_info().rss / 2**20)
        self.seconds = time.perf_counter() - self._start
        end = self._process.cpu_times()
        used = (end.user - self._cpu_start.user) + (end.system - self._cpu_start.system)
        self.cpu_percent = 100.0 * used / self.seconds if self.seconds > 0 else 0.0

    def metrics(self) -> dict[str, float]:
        """Peak RSS (MB), mean CPU use (% of one core) and wall time (s) of the block."""
        return {
            "peak_rss_mb": self.peak_rss_mb,
            "cpu_percent": self.cpu_percent,
            "wall_seconds": self.seconds,
        }
