"""uvicorn HTTP protocols that close a connection slow to send a request's headers (slowloris).

uvicorn bounds the idle gap between kept-alive requests (`timeout_keep_alive`) but not the time a
client may take over the request line and headers. A client that trickles a byte now and then
holds its connection, a file descriptor and a protocol object for as long as it likes; a thousand
such clients (the "slowloris" attack) cost their sender almost nothing and are held forever.
These protocols arm a timer when a connection is made and when a new request begins on a
kept-alive one (its first byte), disarm it once the headers are complete (the handler and the
body have limits of their own) or the connection is lost, and close the connection if it fires.

uvicorn builds the protocol as `http(config=..., server_state=..., app_state=..., _loop=...)`
and, with several workers, pickles its configuration (with `http`) into each spawned worker. So
the timeout is bound with `functools.partial` over a module-level class, which pickles by
reference, rather than in a subclass made at run time, which does not pickle.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any, Literal

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

log = logging.getLogger("layerops.delivery")

SHUTDOWN_READ_GRACE_SECONDS = 0.05
"""On shutdown, how long an idle connection stays open to read a request that already arrived."""


class HeaderTimer:
    """One connection's deadline for a request's headers: armed at most once until disarmed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._loop = loop
        self._timeout = timeout
        self._handle: asyncio.TimerHandle | None = None

    @property
    def armed(self) -> bool:
        """Whether a deadline is running."""
        return self._handle is not None

    def arm(self, transport: asyncio.BaseTransport) -> None:
        """Start the deadline unless one is running (it counts from the connection or the first byte)."""
        if self._handle is None:
            self._handle = self._loop.call_later(self._timeout, self._expire, transport)

    def disarm(self) -> None:
        """Cancel the deadline, if any."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _expire(self, transport: asyncio.BaseTransport) -> None:
        self._handle = None
        if not transport.is_closing():
            log.debug("closing a connection that sent no complete request headers in %.3g s", self._timeout)
            transport.close()


class _HeaderDeadline:
    """What both protocols add to uvicorn's: the header deadline from connection to loss, and a
    shutdown that reads what already arrived. Mixed in before the uvicorn protocol class."""

    loop: asyncio.AbstractEventLoop

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        header_timeout: float,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)  # type: ignore[call-arg]
        self.header_timer = HeaderTimer(self.loop, header_timeout)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self.header_timer.arm(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.header_timer.disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def shutdown(self) -> None:
        # Bytes of a request may have arrived but not been read yet (the loop was busy): closing
        # now would answer them with a reset. Read what waits first; the server keeps running
        # until every connection is closed, so a request found then is answered, then closed.
        self.loop.call_later(SHUTDOWN_READ_GRACE_SECONDS, super().shutdown)  # type: ignore[misc]


class HeaderTimeoutHttpToolsProtocol(_HeaderDeadline, HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections slower than `header_timeout` seconds to
    send a request's headers."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.header_timer.arm(self.transport)

    def on_headers_complete(self) -> None:
        self.header_timer.disarm()
        super().on_headers_complete()


class HeaderTimeoutH11Protocol(_HeaderDeadline, H11Protocol):
    """uvicorn's h11 protocol, closing connections slower than `header_timeout` seconds to send a
    request's headers."""

    def handle_events(self) -> None:
        super().handle_events()
        # h11 has no message-begin callback: a request has begun when bytes wait in its buffer
        # while the peer is still IDLE (no complete request line and headers yet); it leaves IDLE
        # once the headers are parsed. Pipelined bytes are judged once their turn comes.
        if self.conn.their_state is not h11.IDLE:
            self.header_timer.disarm()
        elif self.conn.trailing_data[0]:
            self.header_timer.arm(self.transport)


def header_timeout_protocol(
    header_timeout: float, implementation: Literal["httptools", "h11"] = "httptools"
) -> Callable[..., asyncio.Protocol]:
    """A picklable uvicorn `http=` protocol factory closing connections slower than
    `header_timeout` seconds to send a request's headers."""
    if header_timeout <= 0:
        raise ValueError(f"header_timeout must be positive, got {header_timeout}")
    protocol = HeaderTimeoutHttpToolsProtocol if implementation == "httptools" else HeaderTimeoutH11Protocol
    return functools.partial(protocol, header_timeout=header_timeout)
