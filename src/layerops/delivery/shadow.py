"""Shadow traffic: a copy of each answered request runs on the shadow version, off the request path.

The caller's request is answered first and never waits for, or fails because of, the shadow: the
copy goes onto a bounded queue per model (full: dropped and counted) and one daemon thread per
model decodes it for the shadow version and runs its engine. The shadow's answer goes to the
request observers (the prediction log) with the variant `shadow`, never to the caller.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from layerops.delivery.models import ServedModel
from layerops.delivery.service import Answer, InferenceRequest, Prediction, RequestObserver
from layerops.errors import LayeropsError

log = logging.getLogger("layerops.delivery")

SHADOW_VARIANT = "shadow"
FAILURES_LOGGED_EVERY = 1000
"""After its first failure (logged with its traceback), a shadow's failures are logged as a count."""


@dataclass
class ShadowCounters:
    """Shadow requests by model and outcome (`ok`, `error`, `dropped`) since start."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, model: str, outcome: str) -> None:
        key = (model, outcome)
        self.counts[key] = self.counts.get(key, 0) + 1  # one writer per key's thread, or the loop


class _ShadowLane:
    """One model's shadow queue and the thread that drains it."""

    def __init__(
        self, name: str, size: int, observers: Sequence[RequestObserver], counters: ShadowCounters
    ) -> None:
        self.name = name
        self.size = size
        self._queue: queue.Queue[tuple[InferenceRequest, ServedModel] | None] = queue.Queue(maxsize=size)
        self._observers = observers
        self._counters = counters
        self._failures = 0
        self._thread = threading.Thread(target=self._run, name=f"layerops-shadow-{name}", daemon=True)
        self._thread.start()

    def offer(self, request: InferenceRequest, model: ServedModel) -> None:
        try:
            self._queue.put_nowait((request, model))
        except queue.Full:
            self._counters.add(self.name, "dropped")

    def close(self) -> None:
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass  # the daemon thread ends with the process

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            request, model = item
            started = time.perf_counter()
            try:
                feeds = request.decode(model)
                output = model.engine.predict_columns(feeds.columns)
            except LayeropsError as exc:  # e.g. the shadow's schema refuses the row
                self._counters.add(self.name, "error")
                log.debug("shadow %s v%s refused a request: %s", model.name, model.version, exc)
                continue
            except Exception:  # a broken shadow must never reach the caller or stop the lane
                self._counters.add(self.name, "error")
                self._failures += 1
                # A broken shadow fails on every copy: a traceback for each would cost the server
                # CPU (and the callers latency) and flood the log. The first one, then a count.
                if self._failures == 1:
                    log.warning("shadow %s v%s failed", model.name, model.version, exc_info=True)
                elif self._failures % FAILURES_LOGGED_EVERY == 0:
                    log.warning(
                        "shadow %s v%s: %d copies failed so far", model.name, model.version, self._failures
                    )
                continue
            answer = Answer(Prediction(model, output), time.perf_counter() - started, SHADOW_VARIANT)
            self._counters.add(self.name, "ok")
            for observer in self._observers:
                try:
                    observer(request, feeds, answer)
                except Exception:
                    log.warning("shadow observer failed", exc_info=True)


class ShadowRunner:
    """Runs copies of requests on shadow versions; one bounded lane per model."""

    def __init__(self, observers: Sequence[RequestObserver]) -> None:
        self._observers = observers
        self._lanes: dict[str, _ShadowLane] = {}
        self._lock = threading.Lock()
        self.counters = ShadowCounters()

    def offer(self, request: InferenceRequest, model: ServedModel, queue_size: int) -> None:
        """Queue a copy of `request` for the shadow version `model` (dropped and counted when full)."""
        lane = self._lanes.get(model.name)
        if lane is None or lane.size != queue_size:
            with self._lock:
                lane = self._lanes.get(model.name)
                if lane is None or lane.size != queue_size:
                    if lane is not None:
                        lane.close()
                    lane = self._lanes[model.name] = _ShadowLane(
                        model.name, queue_size, self._observers, self.counters
                    )
        lane.offer(request, model)

    def close(self) -> None:
        """Stop every lane (queued copies are abandoned)."""
        with self._lock:
            lanes = list(self._lanes.values())
            self._lanes.clear()
        for lane in lanes:
            lane.close()
