"""The listeners' guard against slow clients, without an engine: a raw socket that sends half
a request is closed after the header-read bound while a normal client is served, and beyond
the connection cap a new connection is refused at once while the open ones are served."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from edgelambda.listener import ConnectionLimits, GuardedSite, HeaderScan

REQUEST = b"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n"
Listen = Callable[[ConnectionLimits], Awaitable[int]]


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


@pytest.fixture
async def listen() -> AsyncIterator[Listen]:
    """Factory: a guarded site on 127.0.0.1 serving GET /hello; returns its port."""
    runners: list[web.AppRunner] = []

    async def start(limits: ConnectionLimits) -> int:
        app = web.Application()
        app.router.add_get("/hello", hello)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        runners.append(runner)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await GuardedSite(runner, limits, sock=sock).start()
        port: int = sock.getsockname()[1]
        return port

    yield start
    for runner in runners:
        await runner.cleanup()


async def raw(port: int, data: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if data:
        writer.write(data)
        await writer.drain()
    return reader, writer


async def read_all(reader: asyncio.StreamReader, timeout_s: float = 2.0) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(), timeout_s)
    except ConnectionResetError:
        return b""


async def get(port: int) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/hello") as response,
    ):
        return response.status, await response.text()


async def test_half_sent_headers_are_closed_after_the_bound(listen: Listen) -> None:
    port = await listen(ConnectionLimits(header_read_timeout_s=0.3, max_connections=10))
    loop = asyncio.get_running_loop()
    started_s = loop.time()
    reader, writer = await raw(port, b"GET /hello HTTP/1.1\r\nHost: te")

    served = await get(port)  # others are served meanwhile
    answer = await read_all(reader)
    waited_s = loop.time() - started_s
    writer.close()

    assert served == (200, "hello")
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert 0.25 <= waited_s < 1.5


async def test_headers_sent_in_time_are_served_on_a_slow_connection(listen: Listen) -> None:
    port = await listen(ConnectionLimits(header_read_timeout_s=0.3, max_connections=10))
    reader, writer = await raw(port, REQUEST[:10])
    await asyncio.sleep(0.1)
    writer.write(REQUEST[10:])

    first = await asyncio.wait_for(reader.readuntil(b"hello"), 2)
    await asyncio.sleep(0.4)  # past the bound: the answered connection stays open
    writer.write(REQUEST)
    second = await asyncio.wait_for(reader.readuntil(b"hello"), 2)
    writer.close()

    assert first.startswith(b"HTTP/1.1 200")
    assert second.startswith(b"HTTP/1.1 200")


async def test_beyond_the_cap_a_new_connection_is_refused_until_one_closes(
    listen: Listen,
) -> None:
    port = await listen(ConnectionLimits(header_read_timeout_s=30, max_connections=2))
    first = await raw(port)
    second = await raw(port)
    await asyncio.sleep(0.05)

    third_reader, third_writer = await raw(port)
    refused = await read_all(third_reader)
    third_writer.close()
    second[1].write(REQUEST)  # an open connection is still served
    served = await asyncio.wait_for(second[0].readuntil(b"hello"), 2)
    first[1].close()
    await asyncio.sleep(0.05)
    after_one_closed = await get(port)
    second[1].close()

    assert refused.startswith(b"HTTP/1.1 503 ")
    assert served.startswith(b"HTTP/1.1 200")
    assert after_one_closed == (200, "hello")


@pytest.mark.parametrize(
    ("reads", "is_complete"),
    [
        ([b"GET / HTTP/1.1\r\nHost: x\r\n"], False),
        ([b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"], True),
        ([b"GET / HTTP/1.1\r\nHost: x\r\n\r", b"\n"], True),
        ([b"GET / HTTP/1.1\r\n", b"\r", b"\n"], True),
        ([b"GET / HTTP/1.1\n\n"], True),
    ],
)
def test_the_end_of_the_headers_is_found_across_reads(
    reads: list[bytes], is_complete: bool
) -> None:
    scan = HeaderScan()

    assert [scan.feed(data) for data in reads][-1] is is_complete


async def raw_from(address: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))


async def test_one_address_cannot_take_every_connection(listen: Listen) -> None:
    # 127.0.0.2 stands for a slow client: its half-sent requests are held, up to its own cap.
    limits = ConnectionLimits(
        header_read_timeout_s=30, max_connections=4, max_connections_per_address=2
    )
    port = await listen(limits)
    held = [await raw_from("127.0.0.2", port) for _ in range(2)]
    await asyncio.sleep(0.05)

    third_reader, third_writer = await raw_from("127.0.0.2", port)
    refused = await read_all(third_reader)
    third_writer.close()
    served = await get(port)  # from 127.0.0.1: not locked out by 127.0.0.2
    held[0][1].close()
    await asyncio.sleep(0.05)
    again_reader, again_writer = await raw_from("127.0.0.2", port)
    again_writer.write(REQUEST)
    after_one_closed = await asyncio.wait_for(again_reader.readuntil(b"hello"), 2)
    for _, writer in [*held, (again_reader, again_writer)]:
        writer.close()

    assert refused.startswith(b"HTTP/1.1 503 ")
    assert served == (200, "hello")
    assert after_one_closed.startswith(b"HTTP/1.1 200")
