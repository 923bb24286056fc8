"""The HTTP listeners' guard against slow and numerous clients (slowloris): a connection must
send its first request's headers within ``header_read_timeout_s`` or it is closed, and at most
``max_connections`` are open at once; beyond that a new connection gets 503 and is closed at
once, while the open ones are served; and one client address may hold at most
``max_connections_per_address`` of them, so that one slow or greedy client cannot take the
whole cap from the others. aiohttp has no header-read timeout and no connection cap
(its ``keepalive_timeout`` only bounds idle time between requests, and only 3.14 arms it at
connect: aio-libs/aiohttp#13681), so :class:`GuardedSite` wraps the protocol factory that
``web.TCPSite`` would hand to ``loop.create_server`` (and the Runtime API's own protocol, which
is not aiohttp's). Later requests on a kept-alive connection are bounded by the front's
aiohttp ``keepalive_timeout`` and by the Runtime API's own keep-alive check, both set to the
same value by the callers."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import structlog
from aiohttp import web

from edgelambda.config import Settings

log = structlog.get_logger(__name__)

TOO_MANY_CONNECTIONS = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: 35\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    b'{"message": "Too many connections"}'
)
HEADER_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
    b"Content-Length: 31\r\nConnection: close\r\n\r\n"
    b'{"message": "Request Timeout"}\n'
)


@dataclass(frozen=True)
class ConnectionLimits:
    header_read_timeout_s: float
    max_connections: int
    max_connections_per_address: int | None = None  # None: only the listener's cap

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            settings.header_read_timeout_s,
            settings.max_connections,
            settings.max_connections_per_address,
        )


class HeaderScan:
    """Whether the bytes seen so far hold the end of a request's header section."""

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, data: bytes) -> bool:
        seen = self._tail + data
        self._tail = seen[-3:]  # an end split across two reads
        return b"\r\n\r\n" in seen or b"\n\n" in seen


class ConnectionGuard:
    """A protocol factory around another (aiohttp's, or the Runtime API's): counts open
    connections, in all and per client address, refuses beyond either cap and times out the
    first request's headers."""

    def __init__(self, factory: Callable[[], asyncio.Protocol], limits: ConnectionLimits) -> None:
        self.limits = limits
        self.factory = factory
        self.open_connections = 0
        self.open_by_address: Counter[str] = Counter()

    def __call__(self) -> asyncio.Protocol:
        return _GuardedProtocol(self)

    def admit(self, address: str) -> bool:
        """Count a new connection from ``address`` in, unless a cap is reached."""
        per_address = self.limits.max_connections_per_address
        if self.open_connections >= self.limits.max_connections or (
            per_address is not None and self.open_by_address[address] >= per_address
        ):
            return False
        self.open_connections += 1
        self.open_by_address[address] += 1
        return True

    def release(self, address: str) -> None:
        self.open_connections -= 1
        self.open_by_address[address] -= 1
        if self.open_by_address[address] <= 0:
            del self.open_by_address[address]  # the table holds open addresses only


class _GuardedProtocol(asyncio.Protocol):
    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._scan = HeaderScan()
        self._address = ""

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's does not derive from asyncio.Transport.
        transport = cast(asyncio.Transport, base)
        guard = self._guard
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if peer else ""
        if not guard.admit(self._address):
            transport.write(TOO_MANY_CONNECTIONS)
            transport.close()
            return
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(
            guard.limits.header_read_timeout_s, self._headers_timed_out
        )
        self._inner = guard.factory()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if self._timer is not None and self._scan.feed(data):
            self._timer.cancel()
            self._timer = None
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is None:
            return
        self._guard.release(self._address)
        if self._timer is not None:
            self._timer.cancel()
        inner, self._inner = self._inner, None
        inner.connection_lost(exc)

    def _headers_timed_out(self) -> None:
        self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            log.info("request headers timed out", peer=self._transport.get_extra_info("peername"))
            self._transport.write(HEADER_TIMEOUT)
            self._transport.close()


class GuardedSite(web.BaseSite):
    """``web.TCPSite`` (``host``/``port``) or ``web.SockSite`` (``sock``) with a
    :class:`ConnectionGuard` in front of the runner's protocol factory."""

    def __init__(
        self,
        runner: web.BaseRunner,
        limits: ConnectionLimits,
        *,
        host: str | None = None,
        port: int = 0,
        sock: socket.socket | None = None,
        backlog: int = 128,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._limits = limits
        self._host, self._port, self._sock = host, port, sock
        self.guard: ConnectionGuard | None = None

    @property
    def name(self) -> str:
        if self._sock is not None:
            host, port = self._sock.getsockname()[:2]
            return f"http://{host}:{port}"
        return f"http://{self._host or '0.0.0.0'}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self.guard = ConnectionGuard(server, self._limits)
        loop = asyncio.get_running_loop()
        if self._sock is not None:
            self._server = await loop.create_server(
                self.guard, sock=self._sock, backlog=self._backlog
            )
        else:
            self._server = await loop.create_server(
                self.guard, self._host, self._port, backlog=self._backlog
            )
