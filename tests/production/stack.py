"""A production-shaped repository on loopback, from real components: the machine's PostgreSQL, an
S3-compatible server (moto's standalone server) and an MLflow tracking server that stores runs in
PostgreSQL and proxies artifacts to S3 (`--serve-artifacts`), so its clients need no S3
credentials. Only the processes given `S3Store.env` (the MLflow server, and the clients of the
direct `s3://` tests) ever see the credentials and the S3 endpoint."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import service_unavailable

BIN = Path(sys.executable).parent
"""The console scripts installed in this environment (`mlflow`, `moto_server`, `layerops`)."""
BUCKET = "layerops-artifacts"
ACCESS_KEY = "layerops-test-access-key"
SECRET_KEY = "layerops-test-secret-key"
REGION = "us-east-1"
PROXIED_PREFIX = "mlartifacts"
"""Where in the bucket the tracking server keeps artifacts (its `--artifacts-destination`)."""
_FOREIGN = ("AWS_", "MLFLOW_", "LAYEROPS_", "BOTO_")


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_environment(**extra: str) -> dict[str, str]:
    """This environment without any AWS, MLflow or layerops variable, plus `extra`: what a client
    of the tracking server runs with (no credentials, no S3 endpoint)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(_FOREIGN)}
    return {**env, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **extra}


@dataclass(frozen=True)
class S3Store:
    """A running S3-compatible server with one bucket."""

    endpoint: str
    bucket: str = BUCKET

    @property
    def env(self) -> dict[str, str]:
        """The variables a process needs to use the bucket directly (credentials by environment)."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
        }

    def client(self) -> Any:
        """A boto3 S3 client for the test's own checks (its keys given here, not by environment)."""
        import boto3  # type: ignore[import-untyped]

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def keys(self, prefix: str) -> list[str]:
        """Every object key under `prefix`, sorted."""
        paginator = self.client().get_paginator("list_objects_v2")
        return sorted(
            item["Key"]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        )

    def sha256(self, key: str) -> str:
        """SHA-256 of an object's bytes as stored."""
        body = self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class TrackingServer:
    """A running `mlflow server` on PostgreSQL with artifacts proxied to S3."""

    url: str
    database: str
    """The backend store URI (`postgresql+psycopg://...`)."""
    command: tuple[str, ...]
    log: Path


@contextlib.contextmanager
def moto_server(log: Path) -> Iterator[S3Store]:
    """`moto_server -H 127.0.0.1 -p PORT` with the bucket created; stopped afterwards."""
    executable = BIN / "moto_server"
    if not executable.exists():
        service_unavailable(f"moto's standalone server is not installed ({executable} is missing)")
    port = free_port()
    command = (str(executable), "-H", "127.0.0.1", "-p", str(port))
    with running(command, clean_environment(), log) as process:
        store = S3Store(f"http://127.0.0.1:{port}")
        wait_until(lambda: httpx.get(store.endpoint, timeout=2).status_code == 200, process, log, 30)
        store.client().create_bucket(Bucket=store.bucket)
        yield store


def postgres_for_mlflow(url: str) -> str:
    """The SQLAlchemy URL MLflow needs for psycopg 3 (`postgresql://` would pick psycopg2)."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def server_command(database: str, artifacts: str, port: int) -> tuple[str, ...]:
    """The `mlflow server` command line: PostgreSQL for runs and the registry, artifacts proxied
    to `artifacts` (clients see `mlflow-artifacts:/` URIs), loopback only. One worker: it serves
    requests on a thread pool, so concurrent clients still race in the database."""
    return (
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        database,
        "--artifacts-destination",
        artifacts,
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    )


@contextlib.contextmanager
def tracking_server(
    database: str, store: S3Store, log: Path, *, meanwhile: Callable[[], object] = lambda: None
) -> Iterator[TrackingServer]:
    """An MLflow tracking server over `database` whose artifacts go to `store` through its proxy;
    only this process gets the S3 credentials and endpoint. Yields once it answers API calls;
    `meanwhile` runs while it starts (its seconds of start-up leave a core free)."""
    port = free_port()
    command = server_command(database, f"s3://{store.bucket}/{PROXIED_PREFIX}", port)
    # MLflow's job runner (GenAI scoring, trace archival: nothing layerops uses) would start eight
    # more processes and double the start-up time; its telemetry would try the internet.
    env = clean_environment(
        **store.env, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true"
    )
    with running(command, env, log) as process:
        server = TrackingServer(f"http://127.0.0.1:{port}", database, command, log)
        meanwhile()
        wait_until(lambda: httpx.get(f"{server.url}/health", timeout=2).status_code == 200, process, log, 120)
        # The first API call initialises parts of the server (seconds): pay it here.
        search = f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1"
        wait_until(lambda: httpx.get(search, timeout=60).status_code == 200, process, log, 120)
        yield server


@contextlib.contextmanager
def running(command: tuple[str, ...], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` in its own process group (the MLflow server forks workers); stop the group."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen[Any], grace: float = 5) -> None:
    """SIGTERM the process group led by `process`; SIGKILL what is left after `grace` seconds (the
    MLflow server's job runner outlives its workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(15)


def wait_until(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, seconds: float
) -> None:
    """Poll `ready()` (HTTP errors count as not yet) until true; raise with the log's tail if the
    process exits or `seconds` pass first."""
    name = Path(str(process.args[0] if isinstance(process.args, list | tuple) else process.args)).name
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}: {_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if ready():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} was not ready after {seconds:.0f} s: {_tail(log)}")
        time.sleep(0.2)


def _tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])
