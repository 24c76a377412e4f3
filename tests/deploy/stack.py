"""Helpers for the deployment tests: the repository's deploy/ files, a tiny iris home, a real
`layerops serve` and a real Prometheus on loopback ports."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import service_unavailable

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KEY = "deploy-tests-key-0123456789abcdef"
ADMIN_KEY = "deploy-tests-admin-key-0123456789abcdef"
IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document of `path` (a manifest file may hold several)."""
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def tool(name: str) -> str:
    """The path of command-line tool `name` (skips, and fails in CI, when it is not installed)."""
    found = shutil.which(name)
    if found is None:
        service_unavailable(f"{name} is not installed (Debian: apt-get install prometheus)")
    assert found is not None
    return found


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def train_iris_models(home: Path) -> None:
    """iris v1 (a small decision tree) under `production`, iris v2 (the majority-class baseline,
    which predicts one class for every row) under `candidate`: a canary that the analysis rolls back
    on its prediction distance; and `iris_strict` v1 (iris v2's bundle registered again) under
    `production`, for a model served with a timeout too short for a large request."""
    from layerops.datasets import iris
    from layerops.repository.factory import open_repository
    from layerops.settings import Settings
    from layerops.spec import parse_spec
    from layerops.training.pipeline import train

    repository = open_repository(Settings(home=home))
    frame = iris()
    runs = []
    for candidate in ({"name": "decision_tree", "params": {"max_depth": 3}}, {"name": "baseline"}):
        spec = parse_spec(
            {
                "name": "iris",
                "target": "species",
                "seed": 1,
                "cleaning": {"collinearity_threshold": None},
                "candidates": [candidate],
                "tuning": {"trials": 1, "cv_folds": 0},
                "monitoring": {"min_rows": 30},  # drift checked from 30 logged rows (default 100)
            }
        )
        runs.append(train(spec, repository, data=frame).run)
    assert runs[1] is not None
    repository.register("iris_strict", runs[1])  # the baseline's bundle again, under another name
    repository.set_alias("iris", "production", 1, reason="deploy tests")
    repository.set_alias("iris", "candidate", 2, reason="deploy tests: a canary to roll back")
    repository.set_alias("iris_strict", "production", 1, reason="deploy tests")


def _wait_until(check: Any, process: subprocess.Popen[bytes], what: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before it was ready")
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} was not ready after {seconds:.0f} s")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextmanager
def layerops_server(home: Path, log: Path, port: int, **env: str) -> Iterator[str]:
    """`layerops serve` (the installed console script) on loopback `port` over `home`, with the test
    keys and `env` (`LAYEROPS_*`); yields its URL once `/health/ready` answers 200."""
    environment = {
        **os.environ,
        "LAYEROPS_HOME": str(home),
        "LAYEROPS_API_KEYS": KEY,
        "LAYEROPS_ADMIN_API_KEYS": ADMIN_KEY,
        "LAYEROPS_PORT": str(port),
        **env,
    }
    command = [str(Path(sys.executable).with_name("layerops")), "serve"]
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until(
            lambda: httpx.get(f"{url}/health/ready", timeout=1).status_code == 200,
            process,
            f"layerops serve (log: {log})",
            120,
        )
        yield url
    finally:
        _stop(process)


@contextmanager
def prometheus_server(config: Path, storage: Path, log: Path, port: int) -> Iterator[str]:
    """A real Prometheus (`prometheus` on PATH) with `config` on loopback `port`; yields its URL once
    `/-/ready` answers 200."""
    command = [
        tool("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={storage}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until(
            lambda: httpx.get(f"{url}/-/ready", timeout=1).status_code == 200,
            process,
            f"prometheus (log: {log})",
            60,
        )
        yield url
    finally:
        _stop(process)
