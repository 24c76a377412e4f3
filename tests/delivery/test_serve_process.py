"""A real `layerops serve` process on a free loopback port: start, predict, hot reload, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from layerops.repository.api import ModelRepository
from layerops.spec import parse_spec
from layerops.training.pipeline import train
from tests.delivery.conftest import IRIS_ROW, USER, USER_KEY, train_demo_models

pytestmark = pytest.mark.slow

LAYEROPS = str(Path(sys.executable).parent / "layerops")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A `layerops serve` child process and an HTTP client for it."""

    def __init__(self, home: Path, *extra: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "LAYEROPS_API_KEYS": USER_KEY, "LAYEROPS_LOG_LEVEL": "WARNING"}
        self.process = subprocess.Popen(
            [LAYEROPS, "--home", str(home), "serve", "--port", str(self.port), *extra],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.client = httpx.Client(base_url=self.url, headers=USER, timeout=30)

    def wait_ready(self, seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"server exited early:\n{self.process.stdout.read() if self.process.stdout else ''}"
                )
            try:
                if self.client.get("/health/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("server did not become ready")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.client.close()
        return int(self.process.returncode)


@pytest.fixture
def repo_home(tmp_path: Path) -> Iterator[tuple[Path, ModelRepository]]:
    home = tmp_path / "home"
    yield home, train_demo_models(home)


def test_start_predict_and_hot_reload_without_a_failed_request(
    repo_home: tuple[Path, ModelRepository],
) -> None:
    home, repository = repo_home
    server = Server(home, "--model", "iris@production", "--reload-interval", "0.3")
    try:
        server.wait_ready()
        first = server.client.post("/models/iris/predict", json=IRIS_ROW)
        assert first.status_code == 200 and first.headers["X-Model-Version"] == "1"

        spec = parse_spec(
            {
                "name": "iris",
                "data": {"path": "iris.csv"},
                "target": "species",
                "cleaning": {"collinearity_threshold": None},
                "candidates": [{"name": "linear"}],
                "tuning": {"trials": 1},
            },
            base_dir=home / "data",
        )
        assert train(spec, repository).version.version == 2  # type: ignore[union-attr]

        failures: list[str] = []
        versions: list[str] = []
        stop = threading.Event()

        def hammer() -> None:
            with httpx.Client(base_url=server.url, headers=USER, timeout=30) as client:
                while not stop.is_set():
                    try:
                        response = client.post("/models/iris/predict", json=IRIS_ROW)
                    except httpx.TransportError as exc:
                        failures.append(repr(exc))
                        continue
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text}")
                    versions.append(response.headers.get("X-Model-Version", "?"))

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        repository.set_alias("iris", "production", 2, reason="test promote")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not versions or versions[-1] != "2"):
            time.sleep(0.1)
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join()
        assert failures == []
        assert "1" in versions and versions[-1] == "2"
        assert server.client.get("/models").json()["models"][0]["version"] == 2
        metrics = server.client.get("/metrics", headers=USER).text
        assert 'layerops_reloads_total{model="iris",outcome="success"} 1.0' in metrics
    finally:
        assert server.stop() == 0


def test_sigterm_finishes_in_flight_requests(repo_home: tuple[Path, ModelRepository]) -> None:
    home, _ = repo_home
    server = Server(home, "--reload-interval", "0", "--engine", "native")
    server.wait_ready()
    batch = [IRIS_ROW] * 5000
    results: list[object] = []

    def request() -> None:
        with httpx.Client(base_url=server.url, headers=USER, timeout=60) as client:
            try:
                results.append(client.post("/models/iris/predict", json=batch).status_code)
            except httpx.ConnectError:
                results.append("refused")  # arrived after shutdown began: never accepted
            except httpx.TransportError as exc:
                results.append(f"dropped: {exc!r}")

    threads = [threading.Thread(target=request) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # requests are in flight (a 5,000-row native batch takes a while)
    server.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join()
    code = server.stop()
    assert code == 0
    assert not [r for r in results if isinstance(r, str) and r.startswith("dropped")], results
    assert results.count(200) >= 1, results


def test_a_model_that_cannot_load_stops_start_up_with_one_line(
    repo_home: tuple[Path, ModelRepository],
) -> None:
    home, _ = repo_home
    result = subprocess.run(
        [LAYEROPS, "--home", str(home), "serve", "--model", "iris@staging", "--port", str(_free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LAYEROPS_API_KEYS": USER_KEY},
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "iris@staging" in lines[0] and "staging" in lines[0], result.stderr


def test_two_workers_serve_and_their_supervisor_holds_no_model(
    repo_home: tuple[Path, ModelRepository],
) -> None:
    home, _ = repo_home
    server = Server(home, "--workers", "2", "--model", "iris@production", "--engine", "native")
    try:
        server.wait_ready()
        response = server.client.post("/models/iris/predict", json=IRIS_ROW)
        assert response.status_code == 200, response.text
        # The flags reach the worker processes with the settings object (no environment hand-over).
        for _ in range(4):  # either worker may answer
            assert server.client.get("/models/iris").json()["engine"] == "native"
        supervisor = psutil.Process(server.process.pid)
        workers = [
            child
            for child in supervisor.children(recursive=True)
            if "resource_tracker" not in " ".join(child.cmdline())
        ]
        assert len(workers) == 2
        # The models were checked in a child that has exited; the supervisor never loaded them.
        smallest = min(worker.memory_info().rss for worker in workers)
        assert supervisor.memory_info().rss < 0.6 * smallest  # measured 147 MiB against 377
    finally:
        assert server.stop() == 0


def test_with_two_workers_a_model_that_cannot_load_still_stops_start_up_with_one_line(
    repo_home: tuple[Path, ModelRepository],
) -> None:
    home, _ = repo_home
    result = subprocess.run(
        [LAYEROPS, "--home", str(home), "serve", "--workers", "2", "--model", "iris@staging"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LAYEROPS_API_KEYS": USER_KEY},
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "iris@staging" in lines[0], result.stderr
