"""Adaptive micro-batching: concurrent requests to one model version share one engine call.

Each served model version gets its own `MicroBatcher` (the service makes it; a reloaded version
gets a new one, and requests already queued on the old one finish on the old one). A request is
validated first, so a bad one gets its own 4xx and never joins a batch; its feeds then queue here.

The dispatch rule, applied whenever a request arrives, a batch ends or a wait runs out:
- at most `concurrency` batches run at once (1 by default: "the engine is busy"); requests that
  arrive meanwhile queue, and the next batch takes what queued, from the front, up to
  `max_batch_size` rows (a larger request runs alone and is never split);
- a batch is sent as soon as a slot is free and the queue holds `max_batch_size` rows, or at
  least `target` requests, or its oldest request has waited `max_latency_ms`. `target` is the
  number of requests the previous batch carried: it is 1 at first and after
  `IDLE_RESET_SECONDS` without a batch, so a lone client (whose batches carry one request) is
  dispatched at once and never waits; under concurrent load (a backlog: the last batch carried
  several requests) a free engine waits up to `max_latency_ms` for as many to gather again, and
  the target follows the load down as soon as a wait runs out with fewer;
- with batching off every request is its own batch and up to `concurrency` run at once.

Backpressure: when the rows already waiting plus the new request's would exceed
`max_queue_rows`, the request fails at once with `OverloadedError` (503 + Retry-After); a request
arriving to an empty queue is always accepted. A request cancelled while it waits (timeout,
disconnect) leaves the queue. Engine calls run in the service's bounded thread pool, except
batches of at most `inline_rows` rows, which the model's load-time timing showed to be cheaper
than the hop to a pool thread (`ServeSettings.inline_budget_ms`): those run on the event loop. If
a call of several requests fails, each is run again alone, so only a request the engine cannot
answer gets an `EngineError` (500); the batcher carries on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial

from layerops.delivery.engines import EngineError, EngineOutput
from layerops.delivery.feeds import Feeds, merge
from layerops.errors import OverloadedError

log = logging.getLogger("layerops.delivery")

IDLE_RESET_SECONDS = 0.1
"""After this long without a batch, the next request is dispatched at once (the target resets)."""

BatchFunction = Callable[[Feeds], EngineOutput]
"""Runs the engine on the merged feeds of one batch (called in a pool thread)."""
Executor = Callable[[Callable[[], EngineOutput]], Awaitable[EngineOutput]]
"""Runs blocking work in the bounded inference pool (`InferenceService.run`)."""
BatchObserver = Callable[[int, Sequence[float]], None]
"""Told each batch's size in rows and each of its requests' queue wait in seconds."""


@dataclass(frozen=True)
class BatchPolicy:
    """How one model's requests are batched and bounded."""

    enabled: bool = True
    """Coalesce concurrent requests; off: each request is its own engine call."""
    max_batch_size: int = 64
    """Most rows in one coalesced engine call."""
    max_latency_ms: float = 2.0
    """Longest a queued request waits for others to join its batch."""
    max_queue_rows: int = 4096
    """Rows that may wait before new requests are refused (`OverloadedError`)."""
    concurrency: int = 1
    """Batches that may run at once."""

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.max_queue_rows < 1 or self.concurrency < 1:
            raise ValueError("max_batch_size, max_queue_rows and concurrency must be at least 1")
        if not self.max_latency_ms >= 0:
            raise ValueError(f"max_latency_ms must be >= 0, got {self.max_latency_ms}")


class _Pending:
    """One queued request: its feeds, when it arrived and where its answer goes."""

    __slots__ = ("arrived", "feeds", "future", "taken")

    def __init__(self, feeds: Feeds, future: asyncio.Future[EngineOutput]) -> None:
        self.feeds = feeds
        self.future = future
        self.arrived = time.perf_counter()
        self.taken = False


class MicroBatcher:
    """Queues one model version's requests and runs them in adaptive batches (see the module doc).

    Use it from one event loop at a time; only the engine call leaves the loop.
    """

    def __init__(
        self,
        predict: BatchFunction,
        *,
        execute: Executor,
        policy: BatchPolicy,
        label: str = "model",
        observe: BatchObserver | None = None,
        inline_rows: int = 0,
    ) -> None:
        self._predict = predict
        self._execute = execute
        self.inline_rows = inline_rows
        self.policy = policy
        self.label = label
        self._observe = observe
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._running = 0
        self._target = 1
        self._last_activity = 0.0  # when a batch last started or ended
        self._timer: asyncio.TimerHandle | None = None
        self._inline_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._max_wait = policy.max_latency_ms / 1000.0

    @property
    def queued_rows(self) -> int:
        """Rows waiting for a batch."""
        return self._queued_rows

    @property
    def running(self) -> int:
        """Batches running now."""
        return self._running

    def idle(self) -> bool:
        """True when nothing waits and nothing runs."""
        return not self._queue and not self._running

    def close(self) -> None:
        """Fail every waiting request (the server is stopping); running batches finish."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting = list(self._queue)
        self._queue.clear()
        self._queued_rows = 0
        for item in waiting:
            item.taken = True
        self._fail(waiting, None, sum(item.feeds.rows for item in waiting))

    async def submit(self, feeds: Feeds) -> EngineOutput:
        """The engine's outputs for exactly `feeds`' rows, computed in some batch.

        Raises `OverloadedError` when the queue is full and `EngineError` when the batch failed.
        """
        limit = self.policy.max_queue_rows
        if self._queue and self._queued_rows + feeds.rows > limit:
            raise OverloadedError(
                f"{self.label} is overloaded: {self._queued_rows} rows are waiting (limit {limit}); "
                "retry later"
            )
        pending = _Pending(feeds, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        self._queued_rows += feeds.rows
        self._pump()
        try:
            return await pending.future
        except asyncio.CancelledError:
            if not pending.taken:  # still queued: give its place back
                self._queue.remove(pending)
                self._queued_rows -= feeds.rows
            raise

    # -- dispatch -----------------------------------------------------------------------------

    def _pump(self) -> None:
        """Start every batch the rule allows now; else arm a timer for the oldest request's deadline."""
        loop = asyncio.get_running_loop()
        if self._timer is not None:  # re-armed below on this loop if still needed
            self._timer.cancel()
            self._timer = None
        while self._queue and self._running < self.policy.concurrency:
            if self._queue[0].feeds.rows <= self.inline_rows:
                # Inline: no timer. The batch forms at the next turn of the loop, taking every
                # request that arrived with this one (their sockets were ready together).
                if not self._inline_scheduled:
                    self._inline_scheduled = True
                    loop.call_soon(self._run_inline)
                return
            now = time.perf_counter()
            wait = self._wait_left(now)
            if wait > 0:
                self._timer = loop.call_later(wait, self._on_timer)
                return
            batch, rows = self._take(self.policy.max_batch_size)
            self._start(batch, rows, now)
            task = loop.create_task(self._run(batch, rows))
            self._tasks.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._tasks.discard)

    def _wait_left(self, now: float) -> float:
        """Seconds the head of the queue should still wait for company (0: dispatch now)."""
        if not self.policy.enabled or self._queued_rows >= self.policy.max_batch_size:
            return 0.0
        idle = not self._running and now - self._last_activity > IDLE_RESET_SECONDS
        target = 1 if idle else self._target
        if len(self._queue) >= target:
            return 0.0
        return max(0.0, self._queue[0].arrived + self._max_wait - now)

    def _on_timer(self) -> None:
        self._timer = None
        self._pump()

    def _take(self, limit: int) -> tuple[list[_Pending], int]:
        """Requests from the front of the queue (one if batching is off, else up to `limit` rows)
        and their rows."""
        first = self._queue.popleft()
        batch, rows = [first], first.feeds.rows
        if self.policy.enabled:
            while self._queue and rows + self._queue[0].feeds.rows <= limit:
                item = self._queue.popleft()
                batch.append(item)
                rows += item.feeds.rows
        for item in batch:
            item.taken = True
        self._queued_rows -= rows
        return batch, rows

    def _start(self, batch: list[_Pending], rows: int, now: float) -> None:
        """Count `batch` as running and report its size and queue waits."""
        self._running += 1
        self._last_activity = now
        self._target = len(batch)
        if self._observe is not None:
            try:
                self._observe(rows, [now - item.arrived for item in batch])
            except Exception:  # metrics must never fail predictions
                log.exception("batch observer failed for %s", self.label)

    def _end(self) -> None:
        self._running -= 1
        self._last_activity = time.perf_counter()
        self._pump()

    def _run_inline(self) -> None:
        """Run the batch at the head of the queue on the event loop (the engine call is cheap)."""
        self._inline_scheduled = False
        if not self._queue or self._running >= self.policy.concurrency:
            return  # closed meanwhile, or a pool batch runs: its end pumps again
        if self._queue[0].feeds.rows > self.inline_rows:
            self._pump()
            return
        batch, rows = self._take(min(self.policy.max_batch_size, self.inline_rows))
        self._start(batch, rows, time.perf_counter())
        try:
            output = self._call([item.feeds for item in batch], rows)
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch, exc, rows)
            else:
                self._retrying(batch, exc)
                for item in batch:  # one bad request must not fail the others that shared its batch
                    try:
                        alone = self._call([item.feeds], item.feeds.rows)
                    except Exception as single:
                        self._fail([item], single, item.feeds.rows)
                    else:
                        self._scatter([item], alone)
        else:
            self._scatter(batch, output)
        finally:
            self._end()

    async def _run(self, batch: list[_Pending], rows: int) -> None:
        """Run one batch in the pool and hand each request its own rows of the outputs."""
        try:
            output = await self._execute(partial(self._call, [item.feeds for item in batch], rows))
        except asyncio.CancelledError:
            self._fail(batch, None, rows)
            raise
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch, exc, rows)
            else:
                self._retrying(batch, exc)
                await self._run_alone(batch)
        else:
            self._scatter(batch, output)
        finally:
            self._end()

    async def _run_alone(self, batch: list[_Pending]) -> None:
        """Run each request of a failed batch on its own, so only the one at fault fails."""
        for index, item in enumerate(batch):
            if item.future.done():  # its caller went away
                continue
            try:
                output = await self._execute(partial(self._call, [item.feeds], item.feeds.rows))
            except asyncio.CancelledError:
                self._fail(batch[index:], None, sum(i.feeds.rows for i in batch[index:]))
                raise
            except Exception as exc:
                self._fail([item], exc, item.feeds.rows)
            else:
                self._scatter([item], output)

    def _retrying(self, batch: list[_Pending], exc: Exception) -> None:
        log.warning(
            "%s failed on a batch of %d requests (%s); running each alone",
            self.label,
            len(batch),
            type(exc).__name__,
        )

    def _call(self, parts: list[Feeds], rows: int) -> EngineOutput:
        output = self._predict(merge(parts))
        if len(output.values) != rows:
            raise EngineError(f"{self.label}: the engine returned {len(output.values)} rows for {rows}")
        return output

    @staticmethod
    def _scatter(batch: list[_Pending], output: EngineOutput) -> None:
        if len(batch) == 1:
            if not batch[0].future.done():
                batch[0].future.set_result(output)
            return
        start = 0
        for item in batch:
            end = start + item.feeds.rows
            if not item.future.done():  # a cancelled caller no longer listens
                probabilities = None if output.probabilities is None else output.probabilities[start:end]
                item.future.set_result(EngineOutput(output.values[start:end], probabilities))
            start = end

    def _fail(self, batch: list[_Pending], exc: BaseException | None, rows: int) -> None:
        if exc is not None:
            log.error("%s failed on a batch of %d rows", self.label, rows, exc_info=exc)
        reason = "the server stopped" if exc is None else f"{type(exc).__name__}; see the server log"
        for item in batch:
            if item.future.done():
                continue
            if isinstance(exc, EngineError):
                error = EngineError(str(exc))
            else:
                error = EngineError(
                    f"{self.label} failed to predict a batch of {rows} rows ({len(batch)} requests): {reason}"
                )
            error.__cause__ = exc
            item.future.set_exception(error)
