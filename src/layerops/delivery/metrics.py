"""Prometheus metrics of one app, in a `CollectorRegistry` of its own (never the global one).

`Metrics` holds the series and the methods the server calls; `middleware.metrics` (outermost)
counts and times every HTTP request with them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterable, Sequence
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

UNMATCHED_ROUTE = "unmatched"
"""The route label of requests no route matched (bounds the label's cardinality)."""

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Request duration buckets in seconds, from 0.5 ms (fast tabular inference) to 10 s."""

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
"""Rows per engine call."""

QUEUE_WAIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
"""Seconds a request waited in its model's batch queue, from 0.1 ms to 5 s."""

VALUE_BUCKETS = (0.0, *(10.0**e for e in range(-2, 7)))
"""Regression prediction buckets: 0 and 10^k for k in -2..6, for targets of unknown scale.

Negative predictions fall in `le="0"`. Buckets below 0 are possible (`Metrics(value_buckets=...)`)
but prometheus_client then drops the `_sum` series, and with it the mean prediction.
"""


_VERSION_LABELS = ("model", "version")
_REQUEST_LABELS = (*_VERSION_LABELS, "variant", "route", "status")
_DURATION_LABELS = (*_VERSION_LABELS, "variant", "route")
_CLASS_LABELS = (*_VERSION_LABELS, "class")
"""Label names of the per-version series (dropped together when a version is retired)."""


class Metrics:
    """The server's Prometheus series; each instance owns an independent registry."""

    def __init__(
        self, *, value_buckets: Sequence[float] = VALUE_BUCKETS, retire_after_seconds: float = 60.0
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "layerops_requests_total",
            "HTTP requests by model, version, traffic variant, route template and status.",
            _REQUEST_LABELS,
            registry=r,
        )
        self.request_duration = Histogram(
            "layerops_request_duration_seconds",
            "HTTP request duration in seconds, until the response body is sent.",
            _DURATION_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "layerops_predictions_total",
            "Predicted classes of classification models.",
            _CLASS_LABELS,
            registry=r,
        )
        self.prediction_value = Histogram(
            "layerops_prediction_value",
            "Predicted values of regression models.",
            _VERSION_LABELS,
            buckets=value_buckets,
            registry=r,
        )
        self.model_load_seconds = Gauge(
            "layerops_model_load_seconds",
            "Seconds it took to load and warm a model version.",
            ["model", "version"],
            registry=r,
        )
        self.model_info = Gauge(
            "layerops_model_info",
            "Served model versions (value 1) with their alias and engine.",
            ["model", "version", "alias", "engine"],
            registry=r,
        )
        self.reloads = Counter(
            "layerops_reloads_total",
            "Hot reloads of a model by outcome (success, failure).",
            ["model", "outcome"],
            registry=r,
        )
        self.batch_size = Histogram(
            "layerops_batch_size",
            "Rows per engine call (micro-batches; 1 per single-row request when batching is off).",
            _VERSION_LABELS,
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.batch_queue_wait = Histogram(
            "layerops_batch_queue_wait_seconds",
            "Seconds each request waited in its model's batch queue before its engine call started.",
            _VERSION_LABELS,
            buckets=QUEUE_WAIT_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("layerops_in_flight_requests", "HTTP requests being served.", registry=r)
        self._served: dict[tuple[str, str], tuple[str, str]] = {}  # (model, alias) → (version, engine)
        self._lock = threading.Lock()  # swaps are reported from reload threads
        self._retired: dict[tuple[str, str], float] = {}  # (model, version) → when it stopped being served
        self._retire_after = retire_after_seconds
        self._per_version: list[tuple[Counter | Histogram, tuple[str, ...]]] = [
            (self.requests, _REQUEST_LABELS),
            (self.request_duration, _DURATION_LABELS),
            (self.predictions, _CLASS_LABELS),
            (self.prediction_value, _VERSION_LABELS),
            (self.batch_size, _VERSION_LABELS),
            (self.batch_queue_wait, _VERSION_LABELS),
        ]

    def observe_request(
        self, model: str, version: str, variant: str, route: str, status: int, seconds: float
    ) -> None:
        """Count one finished HTTP request and record its duration (`variant`: the traffic
        variant that answered, or the alias the model is served by)."""
        self.requests.labels(model, version, variant, route, str(status)).inc()
        self.request_duration.labels(model, version, variant, route).observe(seconds)

    def observe_classes(self, model: str, version: str, labels: Sequence[str]) -> None:
        """Count predicted class labels of a classification batch."""
        for label, count in Tally(labels).items():
            self.predictions.labels(model, version, str(label)).inc(count)

    def observe_values(self, model: str, version: str, values: Iterable[float]) -> None:
        """Record predicted values of a regression batch (non-finite values are skipped)."""
        histogram = self.prediction_value.labels(model, version)
        for value in values:
            if math.isfinite(value):
                histogram.observe(float(value))

    def observe_batch(self, model: str, version: str, rows: int, waits: Iterable[float]) -> None:
        """Record one engine call's size in rows and the queue wait of each request in it."""
        self.batch_size.labels(model, version).observe(rows)
        histogram = self.batch_queue_wait.labels(model, version)
        for wait in waits:
            histogram.observe(wait)

    def observe_load(self, model: str, version: str, seconds: float) -> None:
        """Record how long loading and warming a model version took."""
        self.model_load_seconds.labels(model, version).set(seconds)

    def set_model_info(self, model: str, version: str, alias: str, engine: str) -> None:
        """Mark `model@alias` as served by `version` on `engine`, dropping the series of what it replaced."""
        with self._lock:
            old = self._served.get((model, alias))
            self._served[(model, alias)] = (version, engine)
            if old is not None and old != (version, engine):
                self.model_info.remove(model, old[0], alias, old[1])
                self._forget_load_unless_served(model, old[0])
            self._retired.pop((model, version), None)
            self.model_info.labels(model, version, alias, engine).set(1)
            for outcome in ("success", "failure"):
                self.reloads.labels(model, outcome)  # start at 0 so rate() sees the first reload

    def clear_model_info(self, model: str, alias: str) -> None:
        """Forget `model@alias` (it is no longer served)."""
        with self._lock:
            old = self._served.pop((model, alias), None)
            if old is not None:
                self.model_info.remove(model, old[0], alias, old[1])
                self._forget_load_unless_served(model, old[0])

    def _forget_load_unless_served(self, model: str, version: str) -> None:
        if all(v != version for (m, _), (v, _) in self._served.items() if m == model):
            self.model_load_seconds.remove(model, version)
            self._retired[(model, version)] = time.monotonic()

    def purge_retired(self) -> None:
        """Drop every per-version series of versions retired over `retire_after_seconds` ago.

        Without this, each reload would leave its version's request, prediction and batch series
        behind for good. The grace period lets requests still running on a retired version finish
        (and be scraped) first.
        """
        now = time.monotonic()
        with self._lock:
            due = [key for key, since in self._retired.items() if now - since >= self._retire_after]
            for key in due:
                del self._retired[key]
        for model, version in due:
            for metric, names in self._per_version:
                stale = {
                    tuple(sample.labels[name] for name in names)
                    for family in metric.collect()
                    for sample in family.samples
                    if sample.labels.get("model") == model and sample.labels.get("version") == version
                }
                for labels in stale:
                    metric.remove(*labels)

    def observe_reload(self, model: str, outcome: Literal["success", "failure"]) -> None:
        """Count one hot reload attempt of `model`."""
        if outcome not in ("success", "failure"):
            raise ValueError(f"reload outcome must be 'success' or 'failure', got {outcome!r}")
        self.reloads.labels(model, outcome).inc()

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition body and its content type (Prometheus text, or OpenMetrics if `accept` asks)."""
        self.purge_retired()
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type
