"""The serving runtime: every object a server holds, built once from settings and a repository.

`build_runtime` makes the keys, metrics, loader, registry of served models, inference service and
reloader, and wires what each tells the others (a prediction to the metrics, a swapped version to
the service and the metrics). `create_app(runtime)` then only adds the HTTP surface; a CLI, a test
or a notebook that wants to drive the server's parts takes them from here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from layerops.delivery.auth import KeyStore, key_store
from layerops.delivery.metrics import Metrics
from layerops.delivery.models import ModelLoader, ModelRegistry, ServedModel
from layerops.delivery.monitoring import DriftWatcher, MonitoringMetrics, log_observer
from layerops.delivery.release_metrics import ReleaseCollector, rollback_counter
from layerops.delivery.releases import ReleaseManager
from layerops.delivery.reload import Reloader
from layerops.delivery.routing import TrafficRouter
from layerops.delivery.service import InferenceService, Prediction
from layerops.delivery.settings import ServeSettings
from layerops.delivery.shadow import ShadowRunner
from layerops.errors import LayeropsError
from layerops.monitoring.log import LogSettings, PredictionLog
from layerops.monitoring.store import open_store
from layerops.repository.api import ModelRepository

SwapListener = Callable[[ServedModel], None]
"""Told each version a reload swapped in (after the runtime's own bookkeeping)."""


@dataclass
class ServingRuntime:
    """What one server process holds; built once by `build_runtime`."""

    settings: ServeSettings
    repository: ModelRepository
    keys: KeyStore
    anonymous: bool
    """The explicit no-auth mode (no key source at all, loopback or `INSECURE_NO_AUTH`)."""
    metrics: Metrics
    loader: ModelLoader
    registry: ModelRegistry
    service: InferenceService
    prediction_log: PredictionLog | None = None
    """Where every answer is logged (None: `prediction_log=off`)."""
    reloader: Reloader = field(init=False)
    router: TrafficRouter = field(init=False)
    """Applies traffic policies (canary, A/B, shadow) inside `service.infer`."""
    releases: ReleaseManager = field(init=False)
    """The traffic policies in force and the canary state machine."""
    monitoring: MonitoringMetrics = field(init=False)
    drift: DriftWatcher | None = field(init=False)
    """Checks drift over the recent logged rows (None when nothing is logged)."""
    swap_listeners: list[SwapListener] = field(default_factory=list)
    _releases_started: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.reloader = Reloader(self.registry, self.loader, on_swap=self._swapped, on_failure=self._failed)
        self.router = TrafficRouter(self.registry, self.loader)
        self.service.router = self.router
        self.service.shadows = ShadowRunner(self.service.request_observers)
        self.releases = ReleaseManager(
            self.router,
            self.repository,
            self.reloader,
            traffic_file=self.settings.traffic_file,
            lease_seconds=self.settings.release_lease_seconds,
            rollbacks=rollback_counter(self.metrics.registry),
        )
        self.metrics.registry.register(ReleaseCollector(self.router, self.service.shadows, self.releases))
        self.monitoring = MonitoringMetrics(self.metrics.registry, self.prediction_log)
        self.drift = (
            None
            if self.prediction_log is None
            else DriftWatcher(self.registry, self.prediction_log, self.monitoring)
        )

    def close(self) -> None:
        """The end of serving: stop the inference service, then write what the log still holds."""
        self.service.close()
        if self.service.shadows is not None:
            self.service.shadows.close()
        if self.prediction_log is not None:
            self.prediction_log.close()

    def start(self) -> None:
        """The initiating phase, if nobody ran it yet: load every configured model, then the
        traffic policies (blocking; raises `LayeropsError`)."""
        if not self.registry.ready():
            self.reloader.load_all(degraded=self.settings.start_degraded)
        if not self._releases_started:  # a bad traffic file stops start-up here, in one line
            self.releases.start()
            self._releases_started = True

    def _swapped(self, new: ServedModel, old: ServedModel | None) -> None:
        self.metrics.observe_load(new.name, str(new.version), new.load_seconds)
        self.metrics.set_model_info(new.name, str(new.version), new.ref, new.engine.name)
        if old is None:
            return
        self.service.retire(old)  # requests queued on the old version finish on it
        self.metrics.observe_reload(new.name, "success")
        for listener in self.swap_listeners:
            listener(new)
        settle_heap()  # once per reload: the old version's objects go, the new one's freeze

    def _failed(self, name: str, reason: str) -> None:
        self.metrics.observe_reload(name, "failure")


def build_runtime(settings: ServeSettings, repository: ModelRepository) -> ServingRuntime:
    """The runtime serving the models `settings` names from `repository` (nothing loaded yet)."""
    keys, anonymous = key_store(settings)
    # A retired version's series stay until its last requests have surely finished and been scraped.
    metrics = Metrics(retire_after_seconds=max(60.0, 2 * settings.request_timeout_seconds))
    loader = ModelLoader(repository, settings)
    registry = ModelRegistry(
        settings.model_refs() or loader.discover(), pinned_cache=settings.pinned_cache_size
    )
    if not registry.refs:
        raise LayeropsError(
            "no models to serve: none has a 'production' alias; promote one or pass --model NAME@ALIAS"
        )

    def observe(prediction: Prediction) -> None:
        model = prediction.model
        if prediction.classes:
            metrics.observe_classes(model.name, str(model.version), prediction.labels())
        else:
            metrics.observe_values(model.name, str(model.version), prediction.values())

    def observe_batch(model: ServedModel, rows: int, waits: Sequence[float]) -> None:
        metrics.observe_batch(model.name, str(model.version), rows, waits)

    prediction_log = open_prediction_log(settings)
    service = InferenceService(
        registry,
        loader,
        threads=settings.inference_threads,
        observer=observe,
        policy=settings.batching_for,
        on_batch=observe_batch,
        request_observers=[] if prediction_log is None else [log_observer(prediction_log)],
    )
    return ServingRuntime(
        settings, repository, keys, anonymous, metrics, loader, registry, service, prediction_log
    )


def open_prediction_log(settings: ServeSettings) -> PredictionLog | None:
    """The prediction log `settings` ask for (None when `prediction_log=off`); opens no connection."""
    if not settings.logs_predictions():
        return None
    options = (
        {}
        if settings.prediction_log.startswith("postgres")
        else {"rotate_seconds": settings.prediction_log_rotate_seconds}
    )
    store = open_store(settings.prediction_log, settings.home, **options)
    return PredictionLog(
        store,
        LogSettings(
            capacity_rows=settings.prediction_log_queue_rows,
            sample_rate=settings.prediction_log_sample_rate,
            sample_rates=settings.prediction_log_sample_rates,
            recent_rows=settings.drift_window_rows,
            readable_seconds=settings.prediction_log_rotate_seconds,
        ),
    )


def settle_heap() -> None:
    """Collect once, then freeze what survives (loaded models, imported libraries).

    A served process holds millions of long-lived objects (model graphs, mlflow, pandas). Left in
    the collector's oldest generation, each full collection walks all of them: measured 40-210 ms
    pauses every few seconds under load, which became the p99 of every request in flight. Frozen
    objects are skipped by the collector; requests' short-lived garbage is still collected.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _return_free_memory()


def _return_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them after a model load's temporaries).

    Measured ~30 MiB per worker after loading a 100-tree forest. A no-op where there is no glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass
