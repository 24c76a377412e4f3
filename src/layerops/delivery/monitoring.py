"""The server's side of monitoring: log every answer, check drift on a schedule, export both.

`log_observer` turns each answered request into a prediction-log entry (on the event loop: it only
takes references). `DriftWatcher` runs the drift detector over each served version's recent
logged rows (kept in memory by the log) and sets the drift gauges. `MonitoringMetrics` adds the
log's counters and the drift gauges to the server's Prometheus registry.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from layerops.delivery.feeds import Feeds
from layerops.delivery.models import ModelRegistry, ServedModel
from layerops.delivery.service import Answer, InferenceRequest, RequestObserver
from layerops.errors import LayeropsError
from layerops.monitoring.drift import DriftDetector
from layerops.monitoring.entries import Entry
from layerops.monitoring.log import PredictionLog
from layerops.monitoring.results import DriftReport

log = logging.getLogger("layerops.delivery.monitoring")

_STATISTICS = ("ks", "ks_p_value", "wasserstein", "chi2", "chi2_p_value", "psi")
"""The drift statistics exported as gauges (what each feature's test computed)."""


def log_observer(prediction_log: PredictionLog) -> RequestObserver:
    """A request observer that hands every answer to `prediction_log` (cheap: references only)."""

    def observe(request: InferenceRequest, feeds: Feeds, answer: Answer) -> None:
        prediction = answer.prediction
        model = prediction.model
        metadata = model.metadata
        prediction_log.record(
            Entry(  # positional: the fields in order (cheaper than keywords, once per request)
                model.name,
                model.version,
                answer.variant,
                request.request_id or uuid.uuid4().hex,
                time.time(),
                answer.seconds * 1000.0,
                feeds.rows,
                feeds,
                metadata.features,
                prediction.output.values,
                prediction.output.probabilities,
                metadata.classes,
            )
        )

    return observe


class _LogCollector(Collector):
    """The prediction log's counters, read from the log at scrape time."""

    def __init__(self, prediction_log: PredictionLog) -> None:
        self._log = prediction_log

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        stats = self._log.stats()
        dropped = CounterMetricFamily(
            "layerops_prediction_log_dropped",
            "Logged rows dropped: the queue was full (store slow or down) or unwritten at shutdown.",
            labels=["model"],
        )
        for model, rows in sorted(stats.dropped_rows.items()):
            dropped.add_metric([model], rows)
        batches = CounterMetricFamily(
            "layerops_prediction_log_batches",
            "Batches the log writer handed to its store, by result (failed attempts are retried).",
            labels=["result"],
        )
        batches.add_metric(["written"], stats.written_batches)
        batches.add_metric(["failed"], stats.failed_batches)
        yield dropped
        yield batches
        yield CounterMetricFamily(
            "layerops_prediction_log_rows", "Rows written to the prediction log.", value=stats.written_rows
        )
        yield GaugeMetricFamily(
            "layerops_prediction_log_queued_rows", "Rows waiting for the log writer.", value=stats.queued_rows
        )


class MonitoringMetrics:
    """The drift gauges and the prediction log's counters, in the server's registry."""

    def __init__(self, registry: CollectorRegistry, prediction_log: PredictionLog | None) -> None:
        self.feature_drift = Gauge(
            "layerops_feature_drift",
            "The latest drift statistic of each feature over the recent logged rows.",
            ["model", "version", "feature", "statistic"],
            registry=registry,
        )
        self.prediction_drift = Gauge(
            "layerops_prediction_drift",
            "The latest drift statistic of the predictions over the recent logged rows.",
            ["model", "version", "statistic"],
            registry=registry,
        )
        self.drift_detected = Gauge(
            "layerops_drift_detected",
            "1 when the latest drift check flagged a feature or the predictions, else 0.",
            ["model", "version"],
            registry=registry,
        )
        self.drift_rows = Gauge(
            "layerops_drift_window_rows",
            "Logged rows the latest drift check of a model version read.",
            ["model", "version"],
            registry=registry,
        )
        if prediction_log is not None:
            registry.register(_LogCollector(prediction_log))

    def publish(self, report: DriftReport) -> None:
        """Set the gauges of one model version from its drift report."""
        version = str(report.version)
        for feature in report.features:
            for name in _STATISTICS:
                if name in feature.statistics:
                    self.feature_drift.labels(report.model, version, feature.feature, name).set(
                        feature.statistics[name]
                    )
        if report.prediction is not None:
            for name in _STATISTICS:
                if name in report.prediction.statistics:
                    self.prediction_drift.labels(report.model, version, name).set(
                        report.prediction.statistics[name]
                    )
        self.drift_detected.labels(report.model, version).set(1 if report.drifted else 0)
        self.drift_rows.labels(report.model, version).set(report.rows)


class DriftWatcher:
    """Checks drift of every served version over its recent logged rows; publishes the gauges."""

    def __init__(
        self, registry: ModelRegistry, prediction_log: PredictionLog, metrics: MonitoringMetrics
    ) -> None:
        self._registry = registry
        self._log = prediction_log
        self._metrics = metrics
        self._detectors: dict[tuple[str, int], DriftDetector | None] = {}
        self.reports: dict[str, DriftReport] = {}
        """Model name → its latest drift report."""

    def check_all(self) -> list[DriftReport]:
        """One round: every served model's current version (blocking; run it in a thread)."""
        done = []
        for model in self._registry.models():
            report = self.check(model)
            if report is not None:
                done.append(report)
        return done

    def check(self, model: ServedModel) -> DriftReport | None:
        """Drift of `model` over its recent logged rows; None without a reference or enough rows."""
        detector = self._detector(model)
        if detector is None:
            return None
        current = self._log.recent(model.name, model.version)
        if len(current) < model.metadata.monitoring.min_rows:
            return None
        report = detector.score(current, window=f"last {len(current)} rows served")
        self._metrics.publish(report)
        self.reports[model.name] = report
        return report

    def _detector(self, model: ServedModel) -> DriftDetector | None:
        key = (model.name, model.version)
        if key not in self._detectors:
            try:
                # asymptotic KS p-values: scipy's exact ones cost ~0.1 s a feature up to 10,000 rows
                self._detectors[key] = DriftDetector(exact=False).fit(
                    model.metadata, model.reference, version=model.version
                )
            except LayeropsError as exc:
                log.warning("no drift checks for %s v%s: %s", model.name, model.version, exc)
                self._detectors[key] = None
        return self._detectors[key]
