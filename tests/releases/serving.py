"""Helpers for release tests against a running server: a home with several iris versions, a real
uvicorn on a loopback port, load from concurrent clients, and models that misbehave on purpose."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn

from layerops.datasets import iris
from layerops.delivery.app import create_app
from layerops.delivery.engines import EngineError, EngineOutput
from layerops.delivery.models import ServedModel
from layerops.delivery.runtime import ServingRuntime, build_runtime
from layerops.delivery.settings import ServeSettings
from layerops.repository.api import ModelRepository
from layerops.repository.factory import open_repository
from layerops.settings import Settings
from layerops.spec import parse_spec
from layerops.training.pipeline import train

KEY = "release-tests-key-0123456789"
ADMIN_KEY = "release-tests-admin-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def iris_versions(home: Path, count: int) -> ModelRepository:
    """Register `count` iris versions (small forests of different seeds); v1 is production."""
    repository = open_repository(Settings(home=home))
    frame = iris()
    for seed in range(1, count + 1):
        spec = parse_spec(
            {
                "name": "iris",
                "target": "species",
                "seed": seed,
                "cleaning": {"collinearity_threshold": None},
                "candidates": [{"name": "random_forest", "params": {"n_estimators": 10, "max_depth": 3}}],
                "tuning": {"trials": 1, "cv_folds": 0},
            }
        )
        result = train(spec, repository, data=frame)
        assert result.version is not None
    repository.set_alias("iris", "production", 1, reason="fixture")
    return repository


def iris_rows(count: int, seed: int = 0) -> list[dict[str, float]]:
    """`count` iris rows drawn (with jitter) from the data set."""
    frame = iris()[IRIS_FEATURES]
    rng = np.random.default_rng(seed)
    picks = frame.iloc[rng.integers(0, len(frame), count)].to_numpy() + rng.normal(0, 0.05, (count, 4))
    return [dict(zip(IRIS_FEATURES, map(float, row), strict=True)) for row in picks]


def settings_for(home: Path, **overrides: Any) -> ServeSettings:
    """Server settings over `home` with test keys, polling off unless asked."""
    values: dict[str, Any] = {
        "home": home,
        "api_keys": [KEY],
        "admin_api_keys": [ADMIN_KEY],
        "reload_interval_seconds": 0,
        "drift_interval_seconds": 0,
        "models": ["iris"],
    }
    values.update(overrides)
    return ServeSettings(**values)


@contextmanager
def live_server(runtime: ServingRuntime) -> Iterator[str]:
    """Serve `runtime` with uvicorn on a free loopback port (lifespan included); yields its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(runtime), log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def runtime_for(settings: ServeSettings) -> ServingRuntime:
    """A runtime over `settings`' home."""
    return build_runtime(settings, open_repository(settings))


# -- misbehaving models ----------------------------------------------------------------------


@dataclass
class FaultyEngine:
    """Wraps an engine: raises on a share of the calls, or adds a delay to each."""

    inner: Any
    fail_share: float = 0.0
    delay: float = 0.0
    wrong: bool = False
    """Answer the next class instead of the predicted one (a model that is fast, error-free and
    wrong: only feedback labels can tell)."""
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def layout(self) -> Any:
        return self.inner.layout

    def predict_columns(self, columns: Any) -> EngineOutput:
        if self.delay:
            time.sleep(self.delay)
        if self.fail_share and self.rng.random() < self.fail_share:
            raise EngineError("deliberately broken version for the test")
        output = self.inner.predict_columns(columns)
        if not self.wrong:
            return output  # type: ignore[no-any-return]
        probabilities = np.roll(output.probabilities, 1, axis=1)
        return EngineOutput(probabilities.argmax(axis=1), probabilities)


def break_version(runtime: ServingRuntime, broken: int, **fault: Any) -> None:
    """Make every later load of version `broken` (by the router or the reloader) misbehave as
    `fault` says (`fail_share`, `delay`): the server code is real, the model is faulty."""
    loader = runtime.loader
    original = loader.load

    def load(name: str, ref: str, *, version: int | None = None) -> ServedModel:
        model = original(name, ref, version=version)
        if model.version != broken:
            return model
        return dataclasses.replace(model, engine=FaultyEngine(model.engine, **fault), inline_rows=0)

    loader.load = load  # type: ignore[method-assign]


# -- load ------------------------------------------------------------------------------------


@dataclass
class Reply:
    """One request's result as the caller saw it."""

    at: float
    status: int
    seconds: float
    version: str | None
    variant: str | None
    user: str | None


async def _load(
    url: str,
    rows: list[dict[str, Any]],
    *,
    concurrency: int,
    users: Callable[[int], str | None],
    stop: Callable[[], bool] | None,
    pause: float,
    model: str,
) -> list[Reply]:
    replies: list[Reply] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30, limits=limits) as client:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(rows)):
            queue.put_nowait(i)

        async def worker() -> None:
            while not queue.empty():
                if stop is not None and stop():
                    return
                i = queue.get_nowait()
                user = users(i)
                headers = {"X-User-Id": user} if user is not None else {}
                started = time.perf_counter()
                response = await client.post(f"/models/{model}/predict", json=rows[i], headers=headers)
                replies.append(
                    Reply(
                        time.monotonic(),
                        response.status_code,
                        time.perf_counter() - started,
                        response.headers.get("x-model-version"),
                        response.headers.get("x-model-variant"),
                        user,
                    )
                )
                if pause:
                    await asyncio.sleep(pause)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return replies


def send(
    url: str,
    rows: list[dict[str, Any]],
    *,
    model: str = "iris",
    concurrency: int = 8,
    users: Callable[[int], str | None] = lambda i: f"user-{i}",
    stop: Callable[[], bool] | None = None,
    pause: float = 0.0,
) -> list[Reply]:
    """POST every row to `model`'s predict route from `concurrency` clients; every reply, in order done."""
    return asyncio.run(
        _load(url, rows, concurrency=concurrency, users=users, stop=stop, pause=pause, model=model)
    )


def p99(replies: list[Reply]) -> float:
    """The 99th percentile of the replies' latency in seconds."""
    return statistics.quantiles([r.seconds for r in replies], n=100)[98]


# -- a server in its own process ---------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server_process(
    home: Path, *, fault: dict[str, float] | None = None, broken: int = 0, **env: str
) -> Iterator[str]:
    """`python -m tests.releases.faulty_server` on a free port: a real server in its own process
    (so the test's clients do not share its GIL), whose version `broken` misbehaves as `fault`
    says. `env`: extra `LAYEROPS_*` settings. Yields the URL once every model is ready."""
    import os
    import subprocess
    import sys

    port = free_port()
    environment = {
        **os.environ,
        "LAYEROPS_HOME": str(home),
        "LAYEROPS_API_KEYS": KEY,
        "LAYEROPS_ADMIN_API_KEYS": ADMIN_KEY,
        "LAYEROPS_MODELS": "iris",
        "LAYEROPS_RELOAD_INTERVAL_SECONDS": "0",
        "LAYEROPS_DRIFT_INTERVAL_SECONDS": "0",
        **env,
    }
    command = [
        sys.executable,
        "-m",
        "tests.releases.faulty_server",
        str(port),
        str(broken),
        json_dumps(fault or {}),
    ]
    process = subprocess.Popen(command, env=environment, cwd=Path(__file__).parents[2])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the test server exited with {process.returncode}")
            try:
                if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not become ready")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def json_dumps(value: object) -> str:
    import json

    return json.dumps(value)
