"""Fakes shared by the unit tests: a function spec, a container backend that records what
the pool asks of the engine, a clock the tests move by hand, and a Lambda runtime that plays
a function against the Runtime API over HTTP."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from edgelambda.config import Settings
from edgelambda.containers import BackendAbilities, ContainerExit, ContainerSpec, StartedContainer
from edgelambda.listener import ConnectionLimits
from edgelambda.logs import OutputLine
from edgelambda.pool import Pool
from edgelambda.routing import FunctionSpec
from edgelambda.runtime_api import RuntimeApi


def function_spec(
    max_concurrency: int = 2, timeout_s: float = 30.0, min_warm: int = 0
) -> FunctionSpec:
    return FunctionSpec(
        name="fn",
        handler="app.handler",
        code_dir=Path("/nonexistent"),
        runtime="python3.12",
        image="fake:1",
        environment={},
        timeout_s=timeout_s,
        memory_mb=128,
        max_concurrency=max_concurrency,
        min_warm=min_warm,
        idle_timeout_s=None,
        schedules=(),
    )


class FakeBackend:
    """Records what the pool asks of the engine; containers get 10.0.0.N addresses, or
    ``address`` every time (a fake runtime calling from 127.0.0.1 is then the container)."""

    abilities = BackendAbilities()

    def __init__(self, *, address: str | None = None) -> None:
        self.address = address
        self.started: list[ContainerSpec] = []
        self.stopped: list[str] = []
        self.restarted: list[str] = []
        self.removed: list[str] = []
        self.paused: list[str] = []
        self.unpaused: list[str] = []
        self.exit_events: asyncio.Queue[ContainerExit] = asyncio.Queue()
        self.lines: dict[str, list[OutputLine]] = {}  # what each container "prints"
        self._addresses = 1
        self._starts = asyncio.Condition()

    def _address(self) -> str:
        self._addresses += 1
        return self.address or f"10.0.0.{self._addresses}"

    async def wait_started(self, count: int = 1) -> None:
        """Wait until ``count`` containers have been started (a runtime may poll from then)."""
        async with self._starts:
            await self._starts.wait_for(lambda: len(self.started) >= count)

    async def engine_version(self) -> str:
        return "Fake 1.0"

    async def network_gateway(self, network: str) -> str:
        return "10.0.0.1"

    async def function_image(self, function: FunctionSpec, base_image: str) -> str:
        return "fake:1"

    async def start(self, spec: ContainerSpec) -> StartedContainer:
        self.started.append(spec)
        async with self._starts:
            self._starts.notify_all()
        return StartedContainer(id=f"c{len(self.started)}", address=self._address())

    async def stop(self, container_id: str) -> None:
        self.stopped.append(container_id)

    async def restart(self, container_id: str) -> str:
        self.restarted.append(container_id)
        return self._address()

    async def pause(self, container_id: str) -> None:
        self.paused.append(container_id)

    async def unpause(self, container_id: str) -> None:
        self.unpaused.append(container_id)

    async def remove(self, container_id: str) -> None:
        self.removed.append(container_id)

    async def remove_stack(self, stack: str) -> int:
        return 0

    async def running_containers(self, stack: str) -> set[str]:
        return {f"c{n}" for n in range(1, len(self.started) + 1)} - set(self.removed)

    async def output(self, container_id: str, since_s: float) -> AsyncIterator[OutputLine]:
        for line in self.lines.get(container_id, []):
            yield line

    async def memory_peak_mb(self, container_id: str) -> int | None:
        return 42

    async def exits(self, stack: str) -> AsyncIterator[ContainerExit]:
        while True:
            yield await self.exit_events.get()


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


RUNTIME_PATH = "/2018-06-01/runtime"
STREAMING = {"Lambda-Runtime-Function-Response-Mode": "streaming"}


@dataclass(frozen=True)
class Reply:
    """The Runtime API's answer to one call of a runtime."""

    status: int
    text: str

    def document(self) -> Any:
        return json.loads(self.text)


class Refused(Exception):
    """``/next`` answered something other than an invocation."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"{reply.status}: {reply.text}")
        self.reply = reply


@dataclass(frozen=True)
class Delivered:
    """An invocation as a runtime receives it from ``/next``."""

    request_id: str
    headers: CIMultiDictProxy[str]
    payload: bytes

    def event(self) -> Any:
        return json.loads(self.payload)


class FakeRuntime:
    """Plays a Lambda runtime against the Runtime API at ``runtime_api`` (``host:port``), as
    awslambdaric does: poll ``next``, post a response, an error, an init error or a stream.
    The Runtime API knows a sandbox by its caller's address and by the host name it calls
    (its ``AWS_LAMBDA_RUNTIME_API``, carrying its secret), so the pool's backend must hand the
    containers this client's address (``FakeBackend(address="127.0.0.1")``), and the runtime
    calls by the name of the sandbox ``backend`` started last."""

    def __init__(self, runtime_api: str, backend: FakeBackend | None = None) -> None:
        self.runtime_api = runtime_api
        self._backend = backend
        self._session = aiohttp.ClientSession(f"http://{runtime_api}")

    @property
    def host(self) -> str:
        """The ``Host`` it calls by: its sandbox's runtime API name (or the plain address)."""
        if self._backend is None or not self._backend.started:
            return self.runtime_api
        return self._backend.started[-1].env["AWS_LAMBDA_RUNTIME_API"]

    async def close(self) -> None:
        await self._session.close()

    async def next(self) -> Delivered:
        """Wait for an invocation; raises :class:`Refused` with the reply if none is given."""
        headers = {"Host": self.host}
        async with self._session.get(
            f"{RUNTIME_PATH}/invocation/next", headers=headers
        ) as response:
            payload = await response.read()
            if response.status != 200:
                raise Refused(Reply(response.status, payload.decode()))
            request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
            return Delivered(request_id, response.headers, payload)

    async def respond(self, request_id: str, result: object) -> Reply:
        """Post the handler's result: bytes as they are, anything else as JSON."""
        body = result if isinstance(result, bytes) else json.dumps(result).encode()
        return await self.post(f"/invocation/{request_id}/response", body)

    async def answer(self, result: object) -> Delivered:
        """Take the next invocation and answer it with ``result``."""
        delivered = await self.next()
        await self.respond(delivered.request_id, result)
        return delivered

    async def fail(self, request_id: str, error_type: str, message: str) -> Reply:
        """Post the error of a handler that raised, as awslambdaric does."""
        return await self.post(
            f"/invocation/{request_id}/error",
            _error_document(error_type, message),
            {"Lambda-Runtime-Function-Error-Type": error_type},
        )

    async def init_error(self, error_type: str, message: str) -> Reply:
        """Report that the handler could not be loaded."""
        return await self.post(
            "/init/error",
            _error_document(error_type, message),
            {"Lambda-Runtime-Function-Error-Type": error_type},
        )

    async def stream(
        self, request_id: str, chunks: AsyncIterable[bytes], content_type: str
    ) -> Reply:
        """Post a response in streaming mode, one HTTP chunk per item of ``chunks``."""
        headers = {**STREAMING, "Content-Type": content_type}
        return await self.post(f"/invocation/{request_id}/response", chunks, headers)

    async def break_stream(self, request_id: str, chunk: bytes, content_type: str) -> None:
        """Start a streamed response, send ``chunk``, then drop the connection, as a runtime
        killed mid-stream does."""
        host, port = self.runtime_api.rsplit(":", 1)
        _, writer = await asyncio.open_connection(host, int(port))
        head = (
            f"POST {RUNTIME_PATH}/invocation/{request_id}/response HTTP/1.1\r\n"
            f"Host: {self.host}\r\n"
            f"Content-Type: {content_type}\r\n"
            "Lambda-Runtime-Function-Response-Mode: streaming\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        writer.write(head.encode() + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        await writer.drain()
        writer.transport.abort()
        await writer.wait_closed()

    async def post(
        self,
        path: str,
        body: bytes | AsyncIterable[bytes],
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Any POST under the runtime prefix, for callers that break the rules."""
        # A file-like body is sent without blocking the loop, however large.
        data = io.BytesIO(body) if isinstance(body, bytes) else body
        headers = {"Host": self.host, **(headers or {})}
        async with self._session.post(f"{RUNTIME_PATH}{path}", data=data, headers=headers) as reply:
            return Reply(reply.status, await reply.text())


def _error_document(error_type: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type, "stackTrace": []}).encode()


@asynccontextmanager
async def serving_runtime_api(
    pool: Pool, region: str = "us-east-1", settings: Settings | None = None
) -> AsyncIterator[str]:
    """``pool``'s Runtime API on 127.0.0.1; yields its ``host:port``."""
    settings = settings or Settings()
    sock = socket.create_server(("127.0.0.1", 0))
    sock.setblocking(False)
    api = RuntimeApi(
        pool,
        region=region,
        limits=ConnectionLimits.of(settings),
        keepalive_s=settings.header_read_timeout_s,
    )
    await api.start(sock)
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await api.close()
