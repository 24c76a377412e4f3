"""Micro-batching: coalescing, scatter, the no-wait rule for a lone request, backpressure, failures."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pytest

from layerops.bundle import FeatureSchema
from layerops.delivery.batching import IDLE_RESET_SECONDS, BatchPolicy, MicroBatcher
from layerops.delivery.engines import EngineError, EngineOutput
from layerops.delivery.feeds import Columns, FeedLayout, Feeds
from layerops.delivery.metrics import Metrics
from layerops.delivery.settings import ServeSettings
from layerops.errors import OverloadedError

T = TypeVar("T")


class RecordingEngine:
    """A real slow engine: waits at its gate, sleeps, records batch sizes; answers 10·x and [x, 1-x]."""

    name = "recording"

    def __init__(self, delay: float = 0.0) -> None:
        self.layout = FeedLayout.native([FeatureSchema(name="x", dtype="float")])
        self.delay = delay
        self.batches: list[int] = []
        self.threads: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False

    def predict_columns(self, columns: Columns) -> EngineOutput:
        self.gate.wait(10)
        time.sleep(self.delay)
        x = columns["x"][:, 0]
        self.batches.append(len(x))
        self.threads.append(threading.get_ident())
        if self.fail:
            raise RuntimeError("the fake engine broke")
        return EngineOutput(x * 10, np.column_stack([x, 1 - x]))

    def predict(self, frame: pd.DataFrame) -> EngineOutput:
        return self.predict_columns({"x": frame[["x"]].to_numpy(dtype=np.float64)})


def feeds(*values: float) -> Feeds:
    return Feeds({"x": np.array(values, dtype=np.float64).reshape(-1, 1)}, len(values))


class Harness:
    """A batcher over a `RecordingEngine`, its own pool, and the (rows, waits) it reported."""

    def __init__(self, engine: RecordingEngine, inline_rows: int = 0, **policy: Any) -> None:
        self.engine = engine
        self.pool = ThreadPoolExecutor(max_workers=4)
        self.observed: list[tuple[int, list[float]]] = []
        self.executed = 0
        self.batcher = MicroBatcher(
            lambda f: engine.predict_columns(f.columns),
            execute=self.execute,
            policy=BatchPolicy(**policy),
            label="model 'fake' v1",
            observe=lambda rows, waits: self.observed.append((rows, list(waits))),
            inline_rows=inline_rows,
        )

    async def execute(self, func: Callable[[], EngineOutput]) -> EngineOutput:
        self.executed += 1
        return await asyncio.get_running_loop().run_in_executor(self.pool, func)

    def run(self, scenario: Callable[[MicroBatcher], Coroutine[Any, Any, T]]) -> T:
        try:
            return asyncio.run(scenario(self.batcher))
        finally:
            self.engine.gate.set()
            self.pool.shutdown(wait=True)


@pytest.fixture
def engine() -> Iterator[RecordingEngine]:
    engine = RecordingEngine()
    yield engine
    engine.gate.set()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        assert time.perf_counter() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


def assert_own_rows(output: EngineOutput, values: tuple[float, ...]) -> None:
    x = np.asarray(values)
    np.testing.assert_array_equal(output.values, x * 10)
    assert output.probabilities is not None
    np.testing.assert_array_equal(output.probabilities, np.column_stack([x, 1 - x]))


def test_requests_queued_while_the_engine_runs_share_one_call_and_get_their_own_rows(
    engine: RecordingEngine,
) -> None:
    engine.delay = 0.03
    inputs = [(0.0,)] + [(i / 100, i / 100 + 0.001) for i in range(1, 20)]

    async def scenario(batcher: MicroBatcher) -> list[EngineOutput]:
        first = asyncio.ensure_future(batcher.submit(feeds(*inputs[0])))
        await until(lambda: batcher.running == 1)
        rest = [batcher.submit(feeds(*values)) for values in inputs[1:]]
        return list(await asyncio.gather(first, *rest))

    outputs = Harness(engine).run(scenario)
    assert engine.batches == [1, 38]  # the lone first one at once; the 19 that queued behind it together
    for output, values in zip(outputs, inputs, strict=True):
        assert_own_rows(output, values)


def test_a_lone_request_is_dispatched_at_once_even_right_after_a_burst(engine: RecordingEngine) -> None:
    harness = Harness(engine, max_latency_ms=200)

    async def scenario(batcher: MicroBatcher) -> None:
        await batcher.submit(feeds(0.5))
        engine.gate.clear()
        burst = [asyncio.ensure_future(batcher.submit(feeds(i / 10))) for i in range(5)]
        await until(lambda: batcher.queued_rows == 4)
        engine.gate.set()
        await asyncio.gather(*burst)
        await asyncio.sleep(IDLE_RESET_SECONDS + 0.02)  # the burst is over
        await batcher.submit(feeds(0.25))

    harness.run(scenario)
    assert engine.batches == [1, 1, 4, 1]
    lone_waits = [harness.observed[0][1][0], harness.observed[-1][1][0]]
    assert max(lone_waits) < 0.003  # not the 200 ms it may wait under load


def test_under_load_a_free_engine_waits_briefly_for_the_backlog_to_gather(engine: RecordingEngine) -> None:
    harness = Harness(engine, max_latency_ms=300)

    async def scenario(batcher: MicroBatcher) -> None:
        engine.gate.clear()
        first = [asyncio.ensure_future(batcher.submit(feeds(i / 10))) for i in range(5)]
        await until(lambda: batcher.queued_rows == 4)
        engine.gate.set()
        await asyncio.gather(*first)  # the last batch carried 4 requests: the target is now 4
        again = []
        for i in range(4):  # the clients come back one by one, the engine idle meanwhile
            again.append(asyncio.ensure_future(batcher.submit(feeds(i / 10))))
            await asyncio.sleep(0.005)
        await asyncio.gather(*again)

    harness.run(scenario)
    assert engine.batches == [1, 4, 4]
    assert max(harness.observed[-1][1]) < 0.25  # sent when the 4th arrived, not at the 300 ms deadline


def test_a_full_queue_refuses_with_overloaded_and_an_empty_one_takes_any_size(
    engine: RecordingEngine,
) -> None:
    engine.gate.clear()

    async def scenario(batcher: MicroBatcher) -> list[EngineOutput]:
        running = asyncio.ensure_future(batcher.submit(feeds(0.1)))
        await until(lambda: batcher.running == 1)
        queued = [
            asyncio.ensure_future(batcher.submit(feeds(0.2, 0.3))),
            asyncio.ensure_future(batcher.submit(feeds(0.4))),
        ]
        await until(lambda: batcher.queued_rows == 3)
        with pytest.raises(
            OverloadedError, match=r"model 'fake' v1 is overloaded: 3 rows are waiting \(limit 3\)"
        ):
            await batcher.submit(feeds(0.5))
        engine.gate.set()
        done = list(await asyncio.gather(running, *queued))
        done.append(await batcher.submit(feeds(*[0.0] * 5)))  # larger than the bound, but alone
        return done

    outputs = Harness(engine, max_queue_rows=3).run(scenario)
    assert engine.batches == [1, 3, 5]
    assert_own_rows(outputs[1], (0.2, 0.3))


def test_batches_respect_max_batch_size_and_a_larger_request_runs_alone(engine: RecordingEngine) -> None:
    engine.gate.clear()

    async def scenario(batcher: MicroBatcher) -> None:
        pending = [asyncio.ensure_future(batcher.submit(feeds(0.0)))]
        await until(lambda: batcher.running == 1)
        pending += [asyncio.ensure_future(batcher.submit(feeds(i / 10))) for i in range(6)]
        pending.append(asyncio.ensure_future(batcher.submit(feeds(*[0.5] * 6))))
        await until(lambda: batcher.queued_rows == 12)
        engine.gate.set()
        await asyncio.gather(*pending)

    Harness(engine, max_batch_size=4).run(scenario)
    assert engine.batches == [1, 4, 2, 6]


def test_batching_off_runs_every_request_alone(engine: RecordingEngine) -> None:
    engine.delay = 0.005

    async def scenario(batcher: MicroBatcher) -> list[EngineOutput]:
        return list(await asyncio.gather(*[batcher.submit(feeds(i / 10)) for i in range(8)]))

    outputs = Harness(engine, enabled=False, concurrency=4).run(scenario)
    assert engine.batches == [1] * 8
    for i, output in enumerate(outputs):
        assert_own_rows(output, (i / 10,))


def test_a_failed_batch_runs_each_request_alone_and_the_batcher_carries_on(engine: RecordingEngine) -> None:
    engine.gate.clear()

    async def scenario(batcher: MicroBatcher) -> EngineOutput:
        engine.fail = True
        pending = [asyncio.ensure_future(batcher.submit(feeds(i / 10))) for i in range(4)]
        await until(lambda: batcher.queued_rows == 3)
        engine.gate.set()
        results = await asyncio.gather(*pending, return_exceptions=True)
        assert all(isinstance(r, EngineError) for r in results)
        assert "model 'fake' v1 failed to predict a batch of 1 rows (1 requests): RuntimeError" in str(
            results[1]
        )
        assert isinstance(results[1], EngineError) and isinstance(results[1].__cause__, RuntimeError)
        engine.fail = False
        return await batcher.submit(feeds(0.7))

    assert_own_rows(Harness(engine).run(scenario), (0.7,))
    assert engine.batches == [1, 3, 1, 1, 1, 1]  # the batch of 3 failed, then each of its requests alone


def test_a_cancelled_request_leaves_the_queue(engine: RecordingEngine) -> None:
    engine.gate.clear()

    async def scenario(batcher: MicroBatcher) -> None:
        running = asyncio.ensure_future(batcher.submit(feeds(0.1)))
        await until(lambda: batcher.running == 1)
        waiting = asyncio.ensure_future(batcher.submit(feeds(0.2, 0.3)))
        await until(lambda: batcher.queued_rows == 2)
        waiting.cancel()  # e.g. the request timed out
        await asyncio.gather(waiting, return_exceptions=True)
        assert batcher.queued_rows == 0
        engine.gate.set()
        await running
        assert batcher.idle()

    Harness(engine).run(scenario)
    assert engine.batches == [1]


def test_batch_metrics_are_observed_per_model_version() -> None:
    metrics = Metrics()
    metrics.observe_batch("iris", "3", 5, [0.0, 0.001, 0.004, 0.004, 0.2])
    labels = {"model": "iris", "version": "3"}
    assert metrics.registry.get_sample_value("layerops_batch_size_sum", labels) == 5
    assert metrics.registry.get_sample_value("layerops_batch_queue_wait_seconds_count", labels) == 5
    wait_le = {**labels, "le": "0.005"}
    assert metrics.registry.get_sample_value("layerops_batch_queue_wait_seconds_bucket", wait_le) == 4


def test_batching_settings_and_per_model_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYEROPS_MAX_LATENCY_MS", "5")
    monkeypatch.setenv(
        "LAYEROPS_MODEL_BATCHING", '{"shipping": {"batching": false}, "iris": {"max_batch_size": 8}}'
    )
    settings = ServeSettings(inference_threads=3, batch_concurrency=8)
    assert settings.batching_for("iris") == BatchPolicy(max_batch_size=8, max_latency_ms=5.0, concurrency=3)
    off = settings.batching_for("shipping")
    assert not off.enabled and off.concurrency == 2 and off.max_batch_size == 64  # one thread kept free
    assert settings.batching_for("other") == BatchPolicy(max_latency_ms=5.0, concurrency=3)
    with pytest.raises(ValueError, match="max_batch_size"):
        ServeSettings(model_batching={"iris": {"max_batch_size": 0}})


def test_cheap_batches_run_on_the_loop_with_every_request_of_the_same_turn(engine: RecordingEngine) -> None:
    harness = Harness(engine, inline_rows=8, max_latency_ms=200)
    values = [i / 20 for i in range(12)]

    async def scenario(batcher: MicroBatcher) -> tuple[int, list[EngineOutput], EngineOutput]:
        loop_thread = threading.get_ident()
        started = time.perf_counter()
        lone = await batcher.submit(feeds(0.5))  # alone: no wait for company, despite max_latency_ms
        outputs = await asyncio.gather(*(batcher.submit(feeds(v)) for v in values))
        assert time.perf_counter() - started < 0.1  # inline batches never wait for a timer
        assert_own_rows(lone, (0.5,))
        big = await batcher.submit(feeds(*values[:10]))  # more rows than inline_rows: the pool
        return loop_thread, list(outputs), big

    loop_thread, outputs, big = harness.run(scenario)
    # The 12 requests of one turn share calls capped at inline_rows (8) rows, all on the loop thread.
    assert engine.batches == [1, 8, 4, 10]
    assert engine.threads[:3] == [loop_thread] * 3
    assert engine.threads[3] != loop_thread
    assert harness.executed == 1
    for output, value in zip(outputs, values, strict=True):
        assert_own_rows(output, (value,))
    assert_own_rows(big, tuple(values[:10]))
    assert [rows for rows, _ in harness.observed] == [1, 8, 4, 10]


def test_an_inline_batch_that_fails_fails_its_requests_and_the_next_batch_still_runs(
    engine: RecordingEngine,
) -> None:
    harness = Harness(engine, inline_rows=8)

    async def scenario(batcher: MicroBatcher) -> tuple[list[BaseException | EngineOutput], EngineOutput]:
        engine.fail = True
        failed = await asyncio.gather(*(batcher.submit(feeds(v)) for v in (0.1, 0.2)), return_exceptions=True)
        engine.fail = False
        return list(failed), await batcher.submit(feeds(0.3))

    failed, after = harness.run(scenario)
    assert all(isinstance(result, EngineError) for result in failed)
    assert "failed to predict a batch of 1 rows (1 requests)" in str(failed[0])  # each alone, then failed
    assert_own_rows(after, (0.3,))
    assert harness.executed == 0
