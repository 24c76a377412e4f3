"""Connections slow to send their request headers (slowloris) are closed; other clients are served.

In process: the protocol's timer against an in-memory transport, and the pickling that carries it
into `--workers` processes. Against a real `layerops serve`: 300 connections trickling headers, a
normal client and a kept-alive one.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import pickle
import selectors
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from layerops.delivery.http_protocol import header_timeout_protocol
from tests.delivery.conftest import IRIS_ROW, USER, train_demo_models
from tests.delivery.test_serve_process import Server

IMPLEMENTATIONS = ["httptools", "h11"]

# --- the protocol in process -------------------------------------------------------------------

TIMEOUT = 0.2


class MemoryTransport(asyncio.Transport):
    """A transport that keeps what the protocol writes and whether it closed the connection."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers `ok`; `/slow` first takes three header timeouts."""
    if scope["path"] == "/slow":
        await asyncio.sleep(3 * TIMEOUT)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def connect(implementation: str) -> tuple[asyncio.Protocol, MemoryTransport]:
    """A protocol (inside a running loop) with a connection just made."""
    config = uvicorn.Config(app, lifespan="off", log_config=None)
    protocol = header_timeout_protocol(TIMEOUT, implementation)(  # type: ignore[arg-type]
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
    )
    transport = MemoryTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def seconds_until_closed(transport: MemoryTransport, limit: float = 10 * TIMEOUT) -> float:
    """How long until the protocol closes `transport` (fails after `limit` seconds)."""
    start = time.monotonic()
    while not transport.closed:
        assert time.monotonic() - start < limit, "the connection was not closed"
        await asyncio.sleep(0.005)
    return time.monotonic() - start


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("sent", [b"", b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow"], ids=["nothing", "partial"])
def test_a_connection_without_complete_headers_in_time_is_closed(implementation: str, sent: bytes) -> None:
    async def scenario() -> tuple[float, MemoryTransport]:
        protocol, transport = connect(implementation)
        if sent:
            protocol.data_received(sent)
        return await seconds_until_closed(transport), transport

    waited, transport = asyncio.run(scenario())
    assert 0.8 * TIMEOUT <= waited <= TIMEOUT + 0.5
    assert transport.written == b""


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_complete_headers_stop_the_clock_even_for_a_slow_handler(implementation: str) -> None:
    async def scenario() -> tuple[bool, MemoryTransport]:
        protocol, transport = connect(implementation)
        protocol.data_received(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(4 * TIMEOUT)
        kept_open = not transport.closed
        protocol.connection_lost(None)
        return kept_open, transport

    kept_open, transport = asyncio.run(scenario())
    assert kept_open
    assert transport.written.startswith(b"HTTP/1.1 200 ") and transport.written.endswith(b"ok")


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_each_request_on_a_kept_alive_connection_has_its_own_deadline(implementation: str) -> None:
    async def scenario() -> tuple[bool, bool, float, MemoryTransport]:
        protocol, transport = connect(implementation)
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(2 * TIMEOUT)  # idle, older than the timeout: uvicorn's keep-alive applies
        open_when_idle = not transport.closed
        protocol.data_received(b"GET / HTTP/1.1\r\n")  # the next request begins: its clock starts
        await asyncio.sleep(0.1 * TIMEOUT)
        open_after_first_byte = not transport.closed
        return open_when_idle, open_after_first_byte, await seconds_until_closed(transport), transport

    open_when_idle, open_after_first_byte, waited, transport = asyncio.run(scenario())
    assert open_when_idle and open_after_first_byte
    assert 0.6 * TIMEOUT <= waited <= TIMEOUT + 0.5
    assert transport.written.count(b"HTTP/1.1 200 ") == 1


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_a_lost_connection_stops_the_clock(implementation: str) -> None:
    async def scenario() -> bool:
        protocol, _ = connect(implementation)
        protocol.data_received(b"GET / HTTP/1.1\r\n")
        protocol.connection_lost(None)
        return bool(protocol.header_timer.armed)  # type: ignore[attr-defined]

    assert asyncio.run(scenario()) is False


def test_the_protocol_travels_to_worker_processes_in_uvicorns_config() -> None:
    protocol = header_timeout_protocol(3.0)
    config = uvicorn.Config(
        "layerops.cli.serve:app_from_settings",
        factory=True,
        http=protocol,  # type: ignore[arg-type]
        log_config=None,
    )
    copy = pickle.loads(pickle.dumps(config))  # what spawning a worker does
    assert copy.http.keywords == {"header_timeout": 3.0}


def test_a_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        header_timeout_protocol(0)


# --- a real server -----------------------------------------------------------------------------

HEADER_TIMEOUT = 1.0
SLOW_CLIENTS = 300
TRICKLE_SECONDS = 0.25
PARTIAL_REQUEST = b"POST /models/iris/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow"


@pytest.fixture
def home_with_models(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    train_demo_models(home)
    return home


def open_slow_clients(port: int, count: int) -> list[socket.socket]:
    """`count` connections that each sent the start of a request and nothing more."""
    clients = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.sendall(PARTIAL_REQUEST)
        client.setblocking(False)
        clients.append(client)
    return clients


def trickle_until_closed(clients: list[socket.socket], deadline: float) -> list[float]:
    """Send each open client's next header byte every `TRICKLE_SECONDS` until the server closes it
    (or `deadline`); the `time.monotonic()` of each closing."""
    closed_at: dict[socket.socket, float] = {}
    with selectors.DefaultSelector() as selector:
        for client in clients:
            selector.register(client, selectors.EVENT_READ, data=client)
        next_byte = time.monotonic()
        while len(closed_at) < len(clients) and time.monotonic() < deadline:
            if time.monotonic() >= next_byte:
                for client in clients:
                    if client not in closed_at:
                        try:
                            client.send(b"x")
                        except OSError:  # reset: the server closed it
                            closed_at[client] = time.monotonic()
                            selector.unregister(client)
                next_byte = time.monotonic() + TRICKLE_SECONDS
            for key, _ in selector.select(timeout=max(0.0, min(next_byte, deadline) - time.monotonic())):
                client = key.data
                try:
                    data = client.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    closed_at[client] = time.monotonic()
                    selector.unregister(client)
    return list(closed_at.values())


def timed_predict(server: Server) -> tuple[int, float, float]:
    """One keyed predict request: status, seconds taken, `time.monotonic()` at the answer."""
    start = time.monotonic()
    status = server.client.post("/models/iris/predict", json=IRIS_ROW).status_code
    return status, time.monotonic() - start, time.monotonic()


def kept_alive_session(port: int, requests: int, pause: float) -> list[tuple[int, int]]:
    """`requests` predict requests on one HTTP/1.1 connection, `pause` seconds apart: each one's
    status and local port (the same port throughout means the connection was kept)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    answers = []
    try:
        for index in range(requests):
            if index:
                time.sleep(pause)
            connection.request(
                "POST",
                "/models/iris/predict",
                body=json.dumps(IRIS_ROW),
                headers={**USER, "Content-Type": "application/json"},
            )
            response = connection.getresponse()
            response.read()
            assert connection.sock is not None
            answers.append((response.status, connection.sock.getsockname()[1]))
    finally:
        connection.close()
    return answers


@pytest.mark.slow
def test_connections_slow_to_send_headers_are_closed_while_others_are_served(home_with_models: Path) -> None:
    server = Server(
        home_with_models,
        *("--model", "iris@production", "--reload-interval", "0", "--header-timeout", str(HEADER_TIMEOUT)),
    )
    clients: list[socket.socket] = []
    try:
        server.wait_ready()
        started = time.monotonic()
        clients = open_slow_clients(server.port, SLOW_CLIENTS)
        opened = time.monotonic()
        with ThreadPoolExecutor(max_workers=1) as pool:
            watching = pool.submit(trickle_until_closed, clients, opened + HEADER_TIMEOUT + 5)
            during = timed_predict(server)
            session = kept_alive_session(server.port, requests=5, pause=0.6 * HEADER_TIMEOUT)
            closed_at = watching.result()
        after = timed_predict(server)
    finally:
        for client in clients:
            client.close()
        assert server.stop() == 0

    assert len(closed_at) == SLOW_CLIENTS
    # Held until their deadline (not refused as malformed), then all closed soon after it.
    assert min(closed_at) - started >= 0.8 * HEADER_TIMEOUT
    assert max(closed_at) - opened <= HEADER_TIMEOUT + 2
    # A normal client was answered promptly while all of them were still held, and afterwards.
    assert during[0] == 200 and during[1] < 1.0 and during[2] < min(closed_at)
    assert after[0] == 200 and after[1] < 1.0
    # Five requests over 2.4 timeouts on one connection: each request got its own deadline.
    assert [status for status, _ in session] == [200] * 5
    assert len({port for _, port in session}) == 1
