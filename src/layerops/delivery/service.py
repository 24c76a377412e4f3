"""The one inference service every transport calls: native routes, KServe V2, MLflow, the CLI.

`infer(InferenceRequest) -> Answer` is the one entry point: a transport decodes its wire format
into a request (which model, optionally which version, and how to turn the body into the
model's feeds) and encodes the answer; resolution, the inline-or-pool rule, validation,
batching, timing and the request observers are all here.

A request is validated into its engine's feeds (on the event loop when small, where a thread
hop would cost more than the work; in the pool when large), then handed to the micro-batcher of
the exact model version it resolved (`batching.py`), which runs engine calls in a fixed thread
pool (`inference_threads`). A request that times out frees its connection at once; its rows
leave the queue, or their batch finishes on one of the pool's threads, so busy threads never
exceed the bound. (anyio's CapacityLimiter would hand the slot back on cancellation while the
thread kept running.)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from layerops.delivery.batching import BatchPolicy, MicroBatcher
from layerops.delivery.engines import EngineOutput
from layerops.delivery.feeds import Feeds
from layerops.delivery.models import ModelLoader, ModelRegistry, ServedModel, probabilities_by_class
from layerops.releases.analysis import Outcome

if TYPE_CHECKING:
    from layerops.delivery.routing import TrafficRouter
    from layerops.delivery.shadow import ShadowRunner

T = TypeVar("T")

PredictionObserver = Callable[["Prediction"], None]
"""Told every batch's prediction (in a pool thread): e.g. counts predicted classes."""
ModelBatchObserver = Callable[[ServedModel, int, Sequence[float]], None]
"""Told every batch's model version, size in rows and its requests' queue waits in seconds."""
PolicyFor = Callable[[str], BatchPolicy]
"""The batching policy of a model name."""

INLINE_BYTES = 4096
"""Bodies of at most this many bytes (of a cheap format) are decoded on the event loop; larger
ones in the decode pool. The one inline rule of every transport."""


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    """A request for predictions, whatever the transport it came by."""

    model: str
    decode: Callable[[ServedModel], Feeds]
    """Turns the body into the resolved model's feeds (parsing and validation; raises
    `InputError` or `MalformedBodyError`). Runs on the event loop or in the decode pool."""
    version: int | None = None
    """A pinned version; None: the version served now."""
    size: int = 0
    """The body's size in bytes (the inline rule reads it)."""
    cheap: bool = True
    """False for formats that cost more per byte than JSON (CSV through pandas): always the pool."""
    request_id: str | None = None
    headers: Sequence[tuple[bytes, bytes]] = ()
    """The raw HTTP headers (the ASGI scope's list): a traffic policy may key on one."""
    json_body: bytes | None = None
    """The raw JSON body of a native predict call: a traffic policy may key on a field of its
    first row (other transports: None)."""
    state: dict[str, Any] | None = None
    """The HTTP request's state: the service labels it with the model, version and variant that
    answer (what the access log and metrics read), before predicting, so failures carry them too."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The prediction for one request, with what served it and how long it took."""

    prediction: Prediction
    seconds: float
    """From resolution to the prediction, decoding included."""
    variant: str | None = None
    """The traffic variant that answered (None: the model has no traffic policy)."""

    @property
    def version(self) -> int:
        """The model version that answered."""
        return self.prediction.model.version


RequestObserver = Callable[[InferenceRequest, Feeds, Answer], None]
"""Told every answered request (on the event loop: keep it cheap), e.g. a prediction log."""


@dataclass(frozen=True)
class Prediction:
    """A model's answer for a batch, with the version that gave it."""

    model: ServedModel
    output: EngineOutput

    @property
    def classes(self) -> list[str] | None:
        """Class labels in probability-column order (classification)."""
        return self.model.metadata.classes

    def labels(self) -> list[str]:
        """Predicted class labels (classification)."""
        classes = self.classes or []
        return [classes[i] for i in np.asarray(self.output.values, dtype=np.intp).tolist()]

    def values(self) -> list[float]:
        """Predicted values (regression)."""
        return np.asarray(self.output.values, dtype=np.float64).tolist()  # type: ignore[no-any-return]

    def predictions(self) -> list[Any]:
        """Labels for a classifier, values for a regressor."""
        return self.labels() if self.classes else self.values()

    def as_dict(self) -> dict[str, Any]:
        """The native response body."""
        body: dict[str, Any] = {
            "model": self.model.name,
            "version": self.model.version,
            "predictions": self.predictions(),
        }
        if self.output.probabilities is not None and self.classes:
            body["probabilities"] = probabilities_by_class(self.output.probabilities, self.classes)
        return body


class InferenceService:
    """Validates inputs, picks the model version, batches its engine calls, reports the prediction."""

    def __init__(
        self,
        registry: ModelRegistry,
        loader: ModelLoader,
        *,
        threads: int = 4,
        observer: PredictionObserver | None = None,
        policy: PolicyFor | None = None,
        on_batch: ModelBatchObserver | None = None,
        request_observers: Sequence[RequestObserver] = (),
    ) -> None:
        self.registry = registry
        self.loader = loader
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="layerops-inference")
        # Decoding large bodies has its own threads, so big or hostile requests can never take
        # every thread that model calls need.
        self._decode_pool = ThreadPoolExecutor(
            max_workers=max(1, threads // 2), thread_name_prefix="layerops-decode"
        )
        self._observer = observer
        self._policy = policy or (lambda name: BatchPolicy())
        self._on_batch = on_batch
        self.request_observers = list(request_observers)
        self._batchers: dict[tuple[str, int], tuple[ServedModel, MicroBatcher]] = {}
        self._lock = threading.Lock()  # reload hooks retire batchers from other threads
        self.router: TrafficRouter | None = None
        """Applies traffic policies (canary, A/B, shadow) in `infer`; None: every request is
        answered by the model's served version."""
        self.shadows: ShadowRunner | None = None

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """Run blocking work in the bounded inference pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(func, *args))

    async def prepare(self, inline: bool, func: Callable[[], T]) -> T:
        """Run input decoding/validation on the loop when `inline` (small input), else in the
        decode pool; a request that times out or disconnects while queued there is never run."""
        if inline:
            return func()
        return await asyncio.get_running_loop().run_in_executor(self._decode_pool, func)

    def close(self) -> None:
        """Stop: waiting requests fail, queued pool calls are cancelled, running ones finish."""
        with self._lock:
            batchers = [batcher for _, batcher in self._batchers.values()]
            self._batchers.clear()
        for batcher in batchers:
            batcher.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._decode_pool.shutdown(wait=False, cancel_futures=True)

    # -- models -------------------------------------------------------------------------------

    def model(self, name: str, version: int | None = None) -> ServedModel:
        """The served model (current version, or a specific one loaded on demand: blocking)."""
        if version is None:
            return self.registry.get(name)
        return self.registry.get_version(name, version, self.loader)

    async def resolve(self, name: str, version: int | None = None) -> ServedModel:
        """The served model; a version not loaded yet is loaded in the pool, off the event loop."""
        if version is None:
            return self.registry.get(name)
        cached = self.registry.cached(name, version)
        return cached if cached is not None else await self.run(self.model, name, version)

    def batcher(self, model: ServedModel) -> MicroBatcher:
        """The micro-batcher of this very model object (made on first use)."""
        key = (model.name, model.version)
        with self._lock:
            entry = self._batchers.get(key)
            if entry is not None and entry[0] is model:
                return entry[1]
            for stale, (held, batcher) in list(self._batchers.items()):
                if batcher.idle() and not self.registry.serves(held):
                    del self._batchers[stale]
            batcher = self._new_batcher(model)
            self._batchers[key] = (model, batcher)  # one it replaces finishes what it holds
            return batcher

    def retire(self, model: ServedModel) -> None:
        """Forget `model`'s batcher (replaced by a reload); requests queued on it still finish on it."""
        with self._lock:
            entry = self._batchers.get((model.name, model.version))
            if entry is not None and entry[0] is model:
                del self._batchers[(model.name, model.version)]

    def _new_batcher(self, model: ServedModel) -> MicroBatcher:
        engine, observer = model.engine, self._observer

        def predict(feeds: Feeds) -> EngineOutput:  # in a pool thread, or inline when cheap
            output = engine.predict_columns(feeds.columns)
            if observer is not None:
                observer(Prediction(model, output))
            return output

        return MicroBatcher(
            predict,
            execute=self.run,
            policy=self._policy(model.name),
            label=f"model '{model.name}' v{model.version}",
            observe=None if self._on_batch is None else partial(self._on_batch, model),
            inline_rows=model.inline_rows,
        )

    # -- predictions --------------------------------------------------------------------------

    async def predict_feeds(self, model: ServedModel, feeds: Feeds) -> Prediction:
        """Validated feeds → the model's prediction for exactly these rows (batched with others)."""
        return Prediction(model, await self.batcher(model).submit(feeds))

    async def infer(self, request: InferenceRequest) -> Answer:
        """The one entry point: resolve (and route), decode (inline or in the pool), batch, predict,
        observe; a routed request's outcome feeds the canary analysis, and its shadow gets a copy."""
        started = time.perf_counter()
        routed = None
        if request.version is None and self.router is not None:
            routed = self.router.pick(request.model, request.headers, request.json_body)
        if routed is None:
            model = await self.resolve(request.model, request.version)
            variant = None
            analysed = False
        else:
            model, variant, analysed = routed
        if request.state is not None:
            label(request.state, model, variant)
        inline = request.cheap and request.size <= INLINE_BYTES
        if analysed:
            assert variant is not None
            feeds, prediction = await self._analysed(request, model, variant, inline, started)
        else:
            feeds = await self.prepare(inline, partial(request.decode, model))
            prediction = await self.predict_feeds(model, feeds)
        answer = Answer(prediction, time.perf_counter() - started, variant)
        for observer in self.request_observers:
            observer(request, feeds, answer)
        if routed is not None and self.shadows is not None:
            self._shadow(request)
        return answer

    async def _analysed(
        self, request: InferenceRequest, model: ServedModel, variant: str, inline: bool, started: float
    ) -> tuple[Feeds, Prediction]:
        """Predict for a request a canary analysis watches, recording its outcome: a failure
        of the server (an engine error, a timeout, overload) counts; a caller's bad input does not."""
        assert self.router is not None
        feeds = await self.prepare(inline, partial(request.decode, model))  # bad input: not counted
        try:
            prediction = await self.predict_feeds(model, feeds)
        except BaseException:  # cancellation (a timeout) included; re-raised
            seconds = time.perf_counter() - started
            failed = Outcome(time.monotonic(), False, seconds, None, request.request_id)
            self.router.observe(model.name, variant, failed)
            raise
        self.router.observe(
            model.name,
            variant,
            Outcome(
                time.monotonic(),
                True,
                time.perf_counter() - started,
                _first_prediction(prediction),
                request.request_id,
            ),
        )
        return feeds, prediction

    def _shadow(self, request: InferenceRequest) -> None:
        assert self.router is not None and self.shadows is not None
        route = self.router.route(request.model)
        if route is None or route.shadow is None or route.policy.shadow is None:
            return
        self.shadows.offer(request, route.shadow, route.policy.shadow.queue_size)


def label(state: dict[str, Any], model: ServedModel, variant: str | None) -> None:
    """Label a request's state with what answers it (read by the access log, metrics and headers)."""
    state["model"] = model.name
    state["model_version"] = str(model.version)
    state["model_variant"] = variant or model.ref


def _first_prediction(prediction: Prediction) -> str | float | None:
    """The first row's label (classification) or value, for the canary's prediction distance."""
    values = prediction.output.values
    if not len(values):
        return None
    classes = prediction.classes
    return classes[int(values[0])] if classes else float(values[0])
