"""`mlflow models serve -m models:/NAME@production` answers `/invocations` with the same bodies as
`layerops serve`: labels for a classifier, values for a regressor, in every MLflow input format."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.delivery.conftest import IRIS_ROWS, SHIPPING_ROWS
from tests.delivery.test_serve_process import Server

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MlflowServer:
    """An `mlflow models serve --env-manager local` child process (its own process group)."""

    def __init__(self, model_uri: str, tracking_uri: str) -> None:
        self.port = _free_port()
        # MLflow runs `uvicorn` from PATH: the one installed beside this Python.
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": tracking_uri,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        }
        argv = [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local"]
        self.process = subprocess.Popen(
            [*argv, "-h", "127.0.0.1", "-p", str(self.port), "--workers", "1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)

    def wait_ready(self, seconds: float = 180) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read() if self.process.stdout else ""
                raise AssertionError(f"mlflow models serve exited early:\n{output}")
            try:
                if self.client.get("/ping").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise AssertionError("mlflow models serve did not become ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # uvicorn and its worker: the group we started
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.client.close()


@pytest.fixture(scope="module")
def mlflow_servers(served_home: Path) -> Iterator[dict[str, MlflowServer]]:
    """`mlflow models serve` on iris and shipping in production, from the real sqlite registry."""
    if shutil.which("uvicorn", path=f"{BIN}{os.pathsep}{os.environ['PATH']}") is None:
        pytest.skip("uvicorn is not installed, and `mlflow models serve` runs it from PATH")
    tracking_uri = f"sqlite:///{served_home / 'mlflow.db'}"
    servers = {
        name: MlflowServer(f"models:/{name}@production", tracking_uri) for name in ("iris", "shipping")
    }
    try:
        for server in servers.values():
            server.wait_ready()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(scope="module")
def layerops_server(served_home: Path) -> Iterator[Server]:
    """`layerops serve` on the same home (every production model)."""
    server = Server(served_home)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def _bodies(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The same rows in each of MLflow's JSON input formats."""
    frame = pd.DataFrame(rows)
    columns = list(frame.columns)
    return {
        "dataframe_split": {"dataframe_split": {"columns": columns, "data": frame.to_numpy().tolist()}},
        "dataframe_records": {"dataframe_records": rows},
        "instances": {"instances": rows},
        "inputs": {"inputs": {name: frame[name].tolist() for name in columns}},
    }


CASES = [
    (name, fmt) for name, rows in (("iris", IRIS_ROWS), ("shipping", SHIPPING_ROWS)) for fmt in _bodies(rows)
]


@pytest.mark.parametrize(("name", "fmt"), CASES)
def test_mlflow_models_serve_answers_like_layerops_serve(
    mlflow_servers: dict[str, MlflowServer], layerops_server: Server, name: str, fmt: str
) -> None:
    body = _bodies(IRIS_ROWS if name == "iris" else SHIPPING_ROWS)[fmt]

    theirs = mlflow_servers[name].client.post("/invocations", json=body)
    ours = layerops_server.client.post("/invocations", params={"model": name}, json=body)

    assert theirs.status_code == ours.status_code == 200, (theirs.text, ours.text)
    assert theirs.json() == ours.json()
    predictions = ours.json()["predictions"]
    if name == "iris":
        assert all(isinstance(label, str) for label in predictions)
        assert len(set(predictions)) > 1  # the rows are of different species
    else:
        assert all(isinstance(value, float) for value in predictions)


@pytest.mark.parametrize("name", ["iris", "shipping"])
def test_csv_bodies_get_the_same_answers_too(
    mlflow_servers: dict[str, MlflowServer], layerops_server: Server, name: str
) -> None:
    text = io.StringIO()
    pd.DataFrame(IRIS_ROWS if name == "iris" else SHIPPING_ROWS).to_csv(text, index=False)
    headers = {"Content-Type": "text/csv"}

    theirs = mlflow_servers[name].client.post("/invocations", content=text.getvalue(), headers=headers)
    ours = layerops_server.client.post(
        "/invocations", params={"model": name}, content=text.getvalue(), headers=headers
    )

    assert theirs.status_code == ours.status_code == 200, (theirs.text, ours.text)
    assert theirs.json() == ours.json()
