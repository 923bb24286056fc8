"""The HTTP request path without an engine, shared by the gateway tests: the real gateway,
pool and Runtime API on 127.0.0.1, a fake container backend, and a fake runtime playing the
function."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from edgelambda.config import Settings
from edgelambda.cors import CorsPolicy
from edgelambda.gateway import SERVER_KEY, create_app
from edgelambda.logs import RecordingSink
from edgelambda.routing import AuthMode, FunctionSpec, PayloadVersion, Route, RoutingTable
from tests.fakes import Delivered, FakeBackend, FakeRuntime, function_spec

LOOPBACK = "127.0.0.1"  # where the fake runtime calls the Runtime API from


def route(
    path: str = "/items/{id}",
    methods: str = "GET",
    *,
    auth: AuthMode = AuthMode.NONE,
    payload: PayloadVersion = PayloadVersion.V1,
    cors: CorsPolicy | None = None,
) -> Route:
    return Route(path, frozenset(methods.split()), "fn", auth=auth, payload=payload, cors=cors)


@dataclass(frozen=True)
class Gateway:
    """A gateway serving one function ``fn``, its fake engine, the runtime of ``fn``, and
    where the gateway's logs go."""

    client: TestClient[web.Request, web.Application]
    backend: FakeBackend
    runtime: FakeRuntime
    sink: RecordingSink

    def send(self, method: str, path: str, **kwargs: Any) -> asyncio.Task[ClientResponse]:
        async def request() -> ClientResponse:
            return await self.client.request(method, path, **kwargs)

        return asyncio.create_task(request())

    async def delivered(self) -> Delivered:
        """The next invocation, taken by the runtime once a container has been started."""
        await self.backend.wait_started()
        return await self.runtime.next()

    async def call(
        self, method: str, path: str, result: object, **kwargs: Any
    ) -> tuple[ClientResponse, Delivered]:
        """Send a request, let the function answer ``result``; the response (read) and the
        invocation as the function received it."""
        sent = self.send(method, path, **kwargs)
        delivered = await self.delivered()
        await self.runtime.respond(delivered.request_id, result)
        response = await sent
        await response.read()
        return response, delivered


GatewayFactory = Callable[..., Awaitable[Gateway]]


class RawHttp:
    """One kept-alive HTTP/1.1 connection to a gateway, read byte by byte as the wire has
    it: what an HTTP client library would hide (a body framed twice, bytes left over for the
    next response) shows up here. Every read is bounded, so a response that never ends fails
    the test instead of hanging it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, client: TestClient[web.Request, web.Application]) -> RawHttp:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        return cls(reader, writer)

    def send(self, method: str, path: str) -> None:
        self._writer.write(f"{method} {path} HTTP/1.1\r\nHost: gateway\r\n\r\n".encode())

    async def receive(self, timeout_s: float = 5.0) -> tuple[int, CIMultiDict[str], bytes]:
        """The next response on the connection: status, headers and the body as framed."""
        return await asyncio.wait_for(self._receive(), timeout_s)

    async def _receive(self) -> tuple[int, CIMultiDict[str], bytes]:
        head = (await self._reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status_line, *lines = head.split("\r\n")[:-2]
        headers = CIMultiDict(line.split(": ", 1) for line in lines)
        if headers.get("Transfer-Encoding", "").lower() == "chunked":
            return int(status_line.split()[1]), headers, await self._chunked_body()
        body = await self._reader.readexactly(int(headers.get("Content-Length", "0")))
        return int(status_line.split()[1]), headers, body

    async def _chunked_body(self) -> bytes:
        body = b""
        while size := int((await self._reader.readuntil(b"\r\n")).strip(), 16):
            body += await self._reader.readexactly(size)
            await self._reader.readexactly(2)
        await self._reader.readexactly(2)  # the empty trailer section
        return body

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


@asynccontextmanager
async def open_gateways(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    """Factory: ``await start(route, ..., function=spec, **settings)`` -> a started
    gateway whose containers get 127.0.0.1, so the fake runtime is their runtime; one sandbox
    at most unless ``function`` says otherwise. Leaving the block shuts them all down."""
    opened: list[tuple[TestClient[web.Request, web.Application], FakeRuntime]] = []

    async def start(
        *routes: Route, function: FunctionSpec | None = None, **settings: Any
    ) -> Gateway:
        backend, sink = FakeBackend(address=LOOPBACK), RecordingSink()
        table = RoutingTable(
            functions={"fn": function or function_spec(max_concurrency=1)}, routes=routes
        )
        base = Settings(
            runtime_api_host=LOOPBACK,
            runtime_api_port=0,
            data_dir=tmp_path,
            is_reload_enabled=False,
            shutdown_grace_s=0.1,
            reap_interval_s=3600,
        )
        app = create_app(replace(base, **settings), table, backend, sink)
        client = TestClient(TestServer(app))
        await client.start_server()
        runtime = FakeRuntime(app[SERVER_KEY].runtime_api, backend)
        opened.append((client, runtime))
        return Gateway(client, backend, runtime, sink)

    try:
        yield start
    finally:
        for client, runtime in opened:
            await client.close()
            await runtime.close()
