"""`layerops.serve`: the HTTP server of `layerops serve`, in a background thread of this process.

For notebooks and tests: it returns once every model is loaded and the port answers, and stops
gracefully on `.stop()` (or at the end of a `with` block). On a loopback address with no API key
configured it serves without authentication, as `layerops serve` does.

>>> import httpx, layerops
>>> with layerops.serve(["iris"]) as server:
...     answer = httpx.post(f"{server.url}/models/iris/predict", json={
...         "sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2})
>>> answer.json()["predictions"]
['setosa']
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from layerops.api import _context
from layerops.delivery.app import create_app
from layerops.delivery.runtime import ServingRuntime, build_runtime
from layerops.delivery.settings import ServeSettings
from layerops.errors import LayeropsError

START_TIMEOUT_SECONDS = 60.0


class Server:
    """A running `layerops.serve` server: its `url`, its `runtime`, `stop()`."""

    def __init__(self, settings: ServeSettings, runtime: ServingRuntime, sock: socket.socket) -> None:
        import uvicorn

        from layerops.delivery.http_protocol import header_timeout_protocol

        self.runtime = runtime
        """The server's parts: settings, registry of served models, inference service, metrics."""
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        """The base URL, e.g. `http://127.0.0.1:49233`."""
        config = uvicorn.Config(
            create_app(runtime),
            http=header_timeout_protocol(settings.header_timeout_seconds),  # type: ignore[arg-type]
            access_log=False,
            log_level=settings.log_level.lower(),
            timeout_graceful_shutdown=max(5, int(settings.request_timeout_seconds) + 5),
            lifespan="on",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="layerops-serve", daemon=True
        )
        self._socket = sock

    def start(self) -> Server:
        """Start serving; return once the server accepts requests (raises `LayeropsError`)."""
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise LayeropsError(f"the server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Finish in-flight requests, then stop (idempotent)."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(START_TIMEOUT_SECONDS)
        self._socket.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        names = ", ".join(f"{m.name} v{m.version}" for m in self.runtime.registry.models())
        return f"<layerops.Server {self.url} serving {names or 'nothing'}>"


def serve(
    models: Sequence[str] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    home: str | Path | None = None,
    tracking_uri: str | None = None,
    **options: Any,
) -> Server:
    """Serve `models` (`NAME`, `NAME@ALIAS`, `NAME@VERSION`; default: every production alias).

    `port=0` picks a free port (read it from `.url`). Any `layerops serve` setting may be given
    by its name, e.g. `engine="native"`, `batching=False`, `api_keys=["secret"]`. Raises
    `LayeropsError` when a model cannot load.
    """
    base = _context.settings(home, tracking_uri)
    try:
        settings = ServeSettings(
            home=base.home, tracking_uri=base.tracking_uri, registry_uri=base.registry_uri,
            artifact_root=base.artifact_root, models=list(models or []), host=host, port=port, **options,
        )  # fmt: skip
    except ValueError as exc:
        raise LayeropsError(f"invalid server setting: {str(exc).splitlines()[-1].strip()}") from None
    runtime = build_runtime(settings, _context.repository(home, tracking_uri))
    runtime.reloader.load_all(degraded=settings.start_degraded)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise LayeropsError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return Server(settings, runtime, sock).start()
