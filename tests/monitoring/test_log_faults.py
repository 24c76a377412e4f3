"""The prediction log under faults: a store that is down, and SIGTERM with rows still queued."""

from __future__ import annotations

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from layerops.delivery.app import create_app
from layerops.delivery.runtime import build_runtime
from layerops.delivery.settings import ServeSettings
from layerops.monitoring.parquet_store import ParquetStore
from layerops.monitoring.records import Window
from layerops.repository.factory import open_repository
from tests.delivery.conftest import IRIS_ROW, USER, USER_KEY

pytestmark = pytest.mark.slow

LAYEROPS = str(Path(sys.executable).parent / "layerops")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def _p50(client: TestClient, requests: int) -> float:
    seconds = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.post("/models/iris/predict", json=IRIS_ROW, headers=USER)
        seconds.append(time.perf_counter() - started)
        assert response.status_code == 200
    return statistics.median(seconds)


def _metric(text: str, pattern: str) -> float:
    found = re.search(pattern + r" ([0-9.e+-]+)", text)
    return float(found.group(1)) if found else 0.0


def test_a_store_that_is_down_costs_requests_nothing(served_home: Path) -> None:
    def settings(log: str) -> ServeSettings:
        return ServeSettings(
            home=served_home,
            api_keys=[USER_KEY],
            reload_interval_seconds=0,
            prediction_log=log,
            prediction_log_queue_rows=200,
        )

    down = f"postgresql://postgres@127.0.0.1:{_closed_port()}/layerops"
    results = {}
    for name, log in (("off", "off"), ("down", down), ("off_again", "off")):
        runtime = build_runtime(settings(log), open_repository(settings(log)))
        with TestClient(create_app(runtime)) as client:
            _p50(client, 50)  # warm up
            results[name] = _p50(client, 600)
            if name == "down":
                time.sleep(1.5)  # the writer has tried (and failed) at least once
                metrics = client.get("/metrics", headers=USER).text
    failed = _metric(metrics, r'layerops_prediction_log_batches_total\{result="failed"\}')
    dropped = _metric(metrics, r'layerops_prediction_log_dropped_total\{model="iris"\}')
    assert failed >= 1
    assert dropped >= 600 + 50 - 200 - 4096  # beyond the queue's 200 rows (+ the batch held) all dropped
    assert dropped > 0
    no_log = max(results["off"], results["off_again"])
    assert results["down"] <= no_log * 1.5 + 0.0005, results


def _free_port() -> int:
    return _closed_port()


def test_sigterm_writes_every_queued_row_before_exit(served_home: Path, tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    port = _free_port()
    env = {
        **os.environ,
        "LAYEROPS_API_KEYS": USER_KEY,
        "LAYEROPS_PREDICTION_LOG": str(log_dir),
        # the writer would flush within a second; a long rotation keeps rows in an open file
        "LAYEROPS_PREDICTION_LOG_ROTATE_SECONDS": "3600",
    }
    process = subprocess.Popen(
        [LAYEROPS, "--home", str(served_home), "serve", "--port", str(port), "--model", "iris"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        answered: list[str] = []
        lock = threading.Lock()

        def hammer() -> None:
            with httpx.Client(base_url=url, headers=USER, timeout=30) as client:
                for _ in range(150):
                    response = client.post("/models/iris/predict", json=[IRIS_ROW] * 3)
                    assert response.status_code == 200
                    with lock:
                        answered.append(response.headers["x-request-id"])

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        process.send_signal(signal.SIGTERM)  # at once: rows are still queued and the file open
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    frame = ParquetStore(log_dir).read("iris", Window())
    assert len(answered) == 600
    assert sorted(set(frame["request_id"])) == sorted(answered)
    assert len(frame) == 3 * 600
    assert not list(log_dir.rglob("_*")), "no in-progress file is left behind"
