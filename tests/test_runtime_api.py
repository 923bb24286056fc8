"""The Lambda Runtime API over HTTP, in front of the real pool and a fake container backend;
a fake runtime plays the function from 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest

from edgelambda.aws import ACCOUNT_ID
from edgelambda.config import Settings
from edgelambda.containers import ContainerSpec, StartedContainer
from edgelambda.errors import MethodNotAllowed, RouteNotFound, StreamBroken
from edgelambda.invocation import MAX_RESPONSE_BYTES, Invocation, InvocationResult
from edgelambda.logs import RecordingSink
from edgelambda.pool import Pool
from edgelambda.runtime_api import MAX_HEAD_BYTES, Call, Route, encode_response, route
from tests.fakes import (
    RUNTIME_PATH,
    Clock,
    Delivered,
    FakeBackend,
    FakeRuntime,
    Refused,
    Reply,
    function_spec,
    serving_runtime_api,
)

REGION = "eu-west-1"
LOOPBACK = "127.0.0.1"  # where the fake runtime calls from
TRACE = "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=1"
IDLE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RuntimeApi:
    """A pool behind its Runtime API server, and a runtime calling that server."""

    pool: Pool
    backend: FakeBackend
    clock: Clock
    runtime: FakeRuntime

    def invoke(self, invocation: Invocation) -> asyncio.Task[InvocationResult]:
        return asyncio.create_task(self.pool.invoke("fn", invocation))

    async def handed_out(
        self, invocation: Invocation | None = None
    ) -> tuple[asyncio.Task[InvocationResult], Delivered]:
        """Invoke (``{}`` by default) and let the runtime take the invocation: the caller's
        call, and what the runtime received."""
        call = self.invoke(invocation or Invocation(payload=b"{}"))
        await self.backend.wait_started()
        return call, await self.runtime.next()

    async def serve_one(self) -> None:
        """One call, answered: the sandbox exists and its runtime is between invocations."""
        call = self.invoke(Invocation(payload=b"{}"))
        await self.backend.wait_started()
        await self.runtime.answer("done")
        await call


ApiFactory = Callable[..., Awaitable[RuntimeApi]]


@pytest.fixture
async def runtime_api() -> AsyncIterator[ApiFactory]:
    """Factory: ``await runtime_api(address=..., keepalive_s=...)`` -> a pool of one function
    ``fn`` (at most one sandbox) served by a Runtime API on 127.0.0.1. Its containers get
    ``address``: 127.0.0.1 makes the fake runtime their runtime, ``None`` makes it a
    stranger. ``keepalive_s`` bounds an idle connection (the header-read timeout)."""
    built: list[tuple[Pool, FakeRuntime]] = []
    servers = AsyncExitStack()

    async def build(*, address: str | None = LOOPBACK, keepalive_s: float = 10.0) -> RuntimeApi:
        backend, clock = FakeBackend(address=address), Clock()
        settings = Settings(
            queue_size=10,
            shutdown_grace_s=0.1,
            idle_timeout_s=IDLE_TIMEOUT_S,
            reap_interval_s=3600,  # tests call reap() themselves
            header_read_timeout_s=keepalive_s,
        )
        pool = Pool(
            functions={"fn": function_spec(max_concurrency=1)},
            backend=backend,
            settings=settings,
            runtime_api="127.0.0.1:9001",
            clock=clock,
            sink=RecordingSink(),
        )
        address = await servers.enter_async_context(serving_runtime_api(pool, REGION, settings))
        runtime = FakeRuntime(address, backend)
        built.append((pool, runtime))
        return RuntimeApi(pool, backend, clock, runtime)

    yield build
    for pool, runtime in built:
        await pool.close()
        await runtime.close()
    await servers.aclose()


async def refusal(runtime: FakeRuntime) -> Reply:
    with pytest.raises(Refused) as refused:
        await runtime.next()
    return refused.value.reply


async def poll_twice(runtime: FakeRuntime) -> tuple[Reply, asyncio.Task[Delivered]]:
    """Poll ``next`` twice at once: the reply to the poll that was refused, and the poll
    that waits in the pool (whichever of the two came first)."""
    polls = [asyncio.create_task(runtime.next()) for _ in range(2)]
    done, pending = await asyncio.wait(polls, return_when=asyncio.FIRST_COMPLETED)
    with pytest.raises(Refused) as refused:
        await done.pop()
    return refused.value.reply, pending.pop()


async def test_next_delivers_the_invocation_with_lambdas_headers(
    runtime_api: ApiFactory,
) -> None:
    api = await runtime_api()
    invocation = Invocation(
        payload=b'{"n": 1}', trace_id=TRACE, client_context='{"custom": {"k": "v"}}'
    )
    call = api.invoke(invocation)
    await api.backend.wait_started()

    before_ms = time.time() * 1000
    delivered = await api.runtime.next()
    after_ms = time.time() * 1000

    assert delivered.payload == b'{"n": 1}'
    assert delivered.request_id == invocation.request_id
    headers = delivered.headers
    assert headers["Content-Type"] == "application/json"
    assert headers["Lambda-Runtime-Invoked-Function-Arn"] == (
        f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:fn"
    )
    assert headers["Lambda-Runtime-Trace-Id"] == TRACE
    assert headers["Lambda-Runtime-Client-Context"] == '{"custom": {"k": "v"}}'
    timeout_ms = function_spec().timeout_s * 1000
    deadline_ms = int(headers["Lambda-Runtime-Deadline-Ms"])
    assert before_ms + timeout_ms - 1 <= deadline_ms <= after_ms + timeout_ms
    reply = await api.runtime.respond(delivered.request_id, {"ok": True})
    assert (reply.status, reply.document()) == (202, {"status": "OK"})
    assert (await call).payload == b'{"ok": true}'


async def test_an_invocation_without_trace_or_client_context_sends_neither_header(
    runtime_api: ApiFactory,
) -> None:
    api = await runtime_api()
    call, delivered = await api.handed_out()

    assert "Lambda-Runtime-Trace-Id" not in delivered.headers
    assert "Lambda-Runtime-Client-Context" not in delivered.headers
    await api.runtime.respond(delivered.request_id, None)
    assert (await call).payload == b"null"


STRANGER_CALLS: dict[str, Callable[[FakeRuntime, str], Awaitable[Reply]]] = {
    "next": lambda runtime, _: refusal(runtime),
    "response": lambda runtime, request_id: runtime.respond(request_id, "forged"),
    "error": lambda runtime, request_id: runtime.fail(request_id, "Forged", "forged"),
    "init error": lambda runtime, _: runtime.init_error("Forged", "forged"),
}


@pytest.mark.parametrize("call_name", STRANGER_CALLS)
async def test_a_caller_that_is_no_sandbox_gets_403_and_changes_nothing(
    runtime_api: ApiFactory, call_name: str
) -> None:
    api = await runtime_api(address=None)  # the sandbox is at 10.0.0.2, not 127.0.0.1
    call = api.invoke(Invocation(payload=b"{}"))
    await api.backend.wait_started()
    sandbox = await api.pool.sandbox_at("10.0.0.2")
    assert sandbox is not None
    taken = await api.pool.next_invocation(sandbox)

    reply = await STRANGER_CALLS[call_name](api.runtime, taken.request_id)

    assert reply.status == 403
    assert reply.document() == {
        "errorMessage": "127.0.0.1 is not a function sandbox",
        "errorType": "Forbidden",
    }
    api.pool.respond(sandbox, taken.request_id, b'"real"')
    assert (await call).payload == b'"real"'


async def test_an_answer_for_another_or_an_answered_invocation_is_400(
    runtime_api: ApiFactory,
) -> None:
    api = await runtime_api()
    call, delivered = await api.handed_out()

    forged = await api.runtime.respond("not-" + delivered.request_id, "forged")
    real = await api.runtime.respond(delivered.request_id, "real")
    again = await api.runtime.respond(delivered.request_id, "again")

    assert forged.status == 400
    assert forged.document() == {
        "errorMessage": f"not-{delivered.request_id} is not the invocation this sandbox holds",
        "errorType": "InvalidRequestId",
    }
    assert real.status == 202
    assert again.status == 400
    assert (await call).payload == b'"real"'


@pytest.mark.parametrize(
    ("header", "body", "error_type"),
    [
        ("Function.Custom", b'{"errorType": "ValueError"}', "Function.Custom"),
        (None, b'{"errorType": "ValueError", "errorMessage": "bad"}', "ValueError"),
        (None, b'{"errorMessage": "no type"}', "Runtime.Unknown"),
        (None, b"not json", "Runtime.Unknown"),
    ],
)
async def test_an_error_reaches_the_caller_with_its_type(
    runtime_api: ApiFactory, header: str | None, body: bytes, error_type: str
) -> None:
    api = await runtime_api()
    call, delivered = await api.handed_out()
    headers = {} if header is None else {"Lambda-Runtime-Function-Error-Type": header}

    reply = await api.runtime.post(f"/invocation/{delivered.request_id}/error", body, headers)

    assert (reply.status, reply.document()) == (202, {"status": "OK"})
    result = await call
    assert (result.error_type, result.payload) == (error_type, body)


async def test_an_init_error_fails_the_waiting_call_and_retires_the_sandbox(
    runtime_api: ApiFactory,
) -> None:
    api = await runtime_api()
    call = api.invoke(Invocation(payload=b"{}"))
    await api.backend.wait_started()

    reply = await api.runtime.init_error("Runtime.ImportModuleError", "No module named 'app'")

    assert reply.status == 202
    result = await call
    assert result.error_type == "Runtime.ImportModuleError"
    assert json.loads(result.payload)["errorMessage"] == "No module named 'app'"
    assert api.pool.function_at(LOOPBACK) is None  # no sandbox there any more
    assert (await refusal(api.runtime)).status == 403  # the runtime's next poll


async def test_a_streamed_response_reaches_the_caller_chunk_by_chunk(
    runtime_api: ApiFactory,
) -> None:
    api = await runtime_api()
    call, delivered = await api.handed_out()
    more = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"first"
        await more.wait()
        yield b"second"

    posting = asyncio.create_task(api.runtime.stream(delivered.request_id, body(), "text/plain"))
    result = await call
    assert result.stream is not None
    assert result.stream.content_type == "text/plain"
    chunks = result.stream.chunks()

    assert await anext(chunks) == b"first"  # while the runtime is still streaming
    assert not posting.done()
    more.set()
    assert [chunk async for chunk in chunks] == [b"second"]
    assert (await posting).status == 202


async def test_a_stream_the_runtime_breaks_off_is_broken_for_the_caller(
    runtime_api: ApiFactory,
) -> None:
    api = await runtime_api()
    call, delivered = await api.handed_out()

    await api.runtime.break_stream(delivered.request_id, b"partial", "text/plain")

    result = await call
    assert result.stream is not None
    chunks = result.stream.chunks()
    assert await anext(chunks) == b"partial"
    with pytest.raises(StreamBroken):
        await anext(chunks)


async def test_a_response_over_lambdas_limit_fails_the_call_with_lambdas_error(
    runtime_api: ApiFactory,
) -> None:
    api = await runtime_api()
    call, delivered = await api.handed_out()

    # JSON quotes make the body two bytes longer than the string.
    too_large = await api.runtime.respond(delivered.request_id, "x" * (MAX_RESPONSE_BYTES - 1))

    assert too_large.status == 413
    assert too_large.document()["errorType"] == "PayloadTooLarge"
    result = await asyncio.wait_for(call, timeout=1)  # answered now, not at the deadline
    assert result.error_type == "Function.ResponseSizeTooLarge"
    assert json.loads(result.payload) == {
        "errorType": "Function.ResponseSizeTooLarge",
        "errorMessage": "Response payload size exceeded maximum allowed payload size"
        " (6291556 bytes).",
    }


async def test_a_response_of_exactly_lambdas_limit_is_accepted(runtime_api: ApiFactory) -> None:
    api = await runtime_api()
    call, delivered = await api.handed_out()
    body = b'"' + b"x" * (MAX_RESPONSE_BYTES - 2) + b'"'

    reply = await api.runtime.respond(delivered.request_id, body)

    assert reply.status == 202
    assert len((await call).payload) == MAX_RESPONSE_BYTES


async def test_a_sandbox_polls_once_at_a_time(runtime_api: ApiFactory) -> None:
    api = await runtime_api()
    await api.serve_one()

    refused, waiting = await poll_twice(api.runtime)

    assert refused.status == 400
    assert refused.document() == {
        "errorMessage": "this sandbox is already waiting for an invocation",
        "errorType": "InvalidRequestId",
    }
    call = api.invoke(Invocation(payload=b'"work"'))
    delivered = await waiting  # the poll that waits still gets the work
    assert delivered.payload == b'"work"'
    await api.runtime.respond(delivered.request_id, "done")
    await call


async def test_the_poll_of_a_sandbox_stopped_for_idling_is_answered_410(
    runtime_api: ApiFactory,
) -> None:
    api = await runtime_api()
    await api.serve_one()
    _, waiting = await poll_twice(api.runtime)

    api.clock.now_s += IDLE_TIMEOUT_S
    api.pool.reap(api.clock.now_s)

    with pytest.raises(Refused) as refused:
        await waiting
    assert refused.value.reply.status == 410
    assert refused.value.reply.document() == {"errorMessage": "idle", "errorType": "SandboxRetired"}


async def test_an_invocation_whose_runtime_dies_while_receiving_it_goes_to_another_sandbox(
    runtime_api: ApiFactory,
) -> None:
    api = await runtime_api()
    payload = b'"' + b"x" * (32 * 1024 * 1024) + b'"'  # more than the sockets can buffer
    call = api.invoke(Invocation(payload=payload))
    await api.backend.wait_started()
    reader, writer = await raw_connection(api)
    writer.write(poll_head(api))

    await reader.readexactly(1024)  # the invocation starts to arrive ...
    writer.transport.abort()  # ... and the runtime dies

    await asyncio.wait_for(api.backend.wait_started(2), timeout=5)  # another sandbox starts
    delivered = await api.runtime.next()
    assert delivered.payload == payload  # the same invocation, first in line again
    await api.runtime.respond(delivered.request_id, "done")
    assert (await asyncio.wait_for(call, timeout=5)).payload == b'"done"'


async def test_a_caller_at_a_sandbox_s_address_without_its_name_gets_403_and_no_work(
    runtime_api: ApiFactory,
) -> None:
    # After an engine restart another container can get a dead sandbox's address: the address
    # alone no longer identifies a sandbox, the secret in its runtime API name does too.
    api = await runtime_api()
    call = api.invoke(Invocation(payload=b'"work"'))
    await api.backend.wait_started()
    impostor = FakeRuntime(api.runtime.runtime_api)  # same address, calls by the bare address

    try:
        refused = await refusal(impostor)
    finally:
        await impostor.close()

    assert refused.status == 403
    delivered = await api.runtime.next()  # the sandbox's own runtime still gets the work
    assert delivered.payload == b'"work"'
    await api.runtime.respond(delivered.request_id, "done")
    assert (await call).payload == b'"done"'


class SlowToReport(FakeBackend):
    """An engine whose container runs (its runtime may call) before `start` returns."""

    def __init__(self) -> None:
        super().__init__(address=LOOPBACK)
        self.may_return = asyncio.Event()

    async def start(self, spec: ContainerSpec) -> StartedContainer:
        started = await super().start(spec)
        await self.may_return.wait()
        return started


async def test_a_runtime_calling_before_its_start_is_recorded_is_served() -> None:
    backend = SlowToReport()
    pool = one_function_pool(backend)
    async with serving_runtime_api(pool, REGION) as address:
        runtime = FakeRuntime(address, backend)
        call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b'"early"')))
        await backend.wait_started()

        poll = asyncio.create_task(runtime.next())  # before the engine said the container runs
        await asyncio.sleep(0.05)
        backend.may_return.set()

        delivered = await asyncio.wait_for(poll, timeout=2)
        assert delivered.payload == b'"early"'
        await runtime.respond(delivered.request_id, "done")
        assert (await call).payload == b'"done"'
        await pool.close()
        await runtime.close()


# -- the protocol: routing, and HTTP as a runtime (or anything else) speaks it ---------------


@pytest.mark.parametrize(
    ("method", "target", "expected"),
    [
        ("GET", f"{RUNTIME_PATH}/invocation/next", Route(Call.NEXT)),
        ("GET", f"{RUNTIME_PATH}/invocation/next?x=1", Route(Call.NEXT)),
        ("POST", f"{RUNTIME_PATH}/invocation/r-1/response", Route(Call.RESPONSE, "r-1")),
        ("POST", f"{RUNTIME_PATH}/invocation/r%2D1/error", Route(Call.ERROR, "r-1")),
        ("POST", f"{RUNTIME_PATH}/init/error", Route(Call.INIT_ERROR)),
    ],
)
def test_the_four_calls_are_routed(method: str, target: str, expected: Route) -> None:
    assert route(method, target) == expected


@pytest.mark.parametrize(
    ("method", "target", "error"),
    [
        ("GET", "/", RouteNotFound),
        ("GET", f"{RUNTIME_PATH}/invocation/next/more", RouteNotFound),
        ("POST", f"{RUNTIME_PATH}/invocation//response", RouteNotFound),
        ("GET", "/2018-06-01/runtimeX/invocation/next", RouteNotFound),
        ("POST", f"{RUNTIME_PATH}/invocation/next", MethodNotAllowed),
        ("GET", f"{RUNTIME_PATH}/invocation/r-1/response", MethodNotAllowed),
    ],
)
def test_anything_else_is_not_found_or_not_allowed(
    method: str, target: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        route(method, target)


def test_a_header_value_with_a_line_break_is_never_sent() -> None:
    with pytest.raises(ValueError, match="line break"):
        encode_response(200, {"Lambda-Runtime-Client-Context": "a\r\nX-Evil: 1"}, b"")


def request_id_in(response: bytes) -> str:
    """The ``Lambda-Runtime-Aws-Request-Id`` of a raw ``next`` response."""
    return next(
        line.split(b": ", 1)[1].decode()
        for line in response.split(b"\r\n")
        if line.startswith(b"Lambda-Runtime-Aws-Request-Id")
    )


async def raw_connection(api: RuntimeApi) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the Runtime API, to speak HTTP byte by byte."""
    host, port = api.runtime.runtime_api.rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


def poll_head(api: RuntimeApi, *, method: str = "GET", extra: str = "") -> bytes:
    """The sandbox's ``next`` poll, as raw bytes."""
    return (
        f"{method} {RUNTIME_PATH}/invocation/next HTTP/1.1\r\n"
        f"Host: {api.runtime.host}\r\n{extra}\r\n"
    ).encode()


def answer_head(api: RuntimeApi, request_id: str, length: int, extra: str = "") -> bytes:
    """The head of the sandbox's POST of an answer of ``length`` bytes."""
    return (
        f"POST {RUNTIME_PATH}/invocation/{request_id}/response HTTP/1.1\r\n"
        f"Host: {api.runtime.host}\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


async def exchange(address: str, request: bytes) -> bytes:
    """Send ``request`` on a new connection and read until the server closes it."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), timeout=5)
    finally:
        writer.close()


async def test_a_runtime_asking_to_close_is_answered_and_closed(runtime_api: ApiFactory) -> None:
    api = await runtime_api()
    call = api.invoke(Invocation(payload=b'"work"'))
    await api.backend.wait_started()
    request = poll_head(api, extra="Connection: close\r\n")

    reply = await exchange(api.runtime.runtime_api, request)  # read to the close

    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close" in head
    assert body == b'"work"'
    await api.runtime.respond(request_id_in(head), "done")
    assert (await call).payload == b'"done"'


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: -5\r\n\r\n",
        b"GET /x HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 1) + b"\r\n\r\n",
    ],
    ids=["garbage", "bad length", "headers too large"],
)
async def test_a_malformed_request_gets_400_and_the_connection_closes(
    runtime_api: ApiFactory, request_bytes: bytes
) -> None:
    api = await runtime_api()

    reply = await exchange(api.runtime.runtime_api, request_bytes)

    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert json.loads(reply.partition(b"\r\n\r\n")[2])["errorType"] == "BadRequest"


async def test_a_sandbox_calling_an_unknown_path_gets_404_in_the_apis_shape(
    runtime_api: ApiFactory,
) -> None:
    api = await runtime_api()
    await api.serve_one()

    reply = await api.runtime.post("/invocation/next/extra", b"")

    assert reply.status == 404
    assert reply.document()["errorType"] == "RouteNotFound"


async def test_a_request_sent_before_the_last_was_answered_drops_the_connection(
    runtime_api: ApiFactory,
) -> None:
    api = await runtime_api()
    await api.serve_one()
    reply = await exchange(api.runtime.runtime_api, poll_head(api) * 2)  # pipelined

    assert reply == b""  # closed without an answer ...
    assert api.pool.function_at(LOOPBACK) is None  # ... and its poll ended as a gone runtime's


async def test_an_idle_connection_is_closed_after_the_keepalive_time(
    runtime_api: ApiFactory,
) -> None:
    api = await runtime_api(keepalive_s=KEEPALIVE_S)
    reader, writer = await raw_connection(api)
    writer.write(b"GET / HTTP/1.1\r\nHost: someone\r\n\r\n")  # a stranger's call
    first = await reader.readuntil(b"}")
    started = time.monotonic()

    rest = await asyncio.wait_for(reader.read(), timeout=2)  # the server closes

    assert first.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert rest == b""
    assert 0.1 <= time.monotonic() - started < 1.5
    writer.close()


async def test_a_bug_behind_a_call_is_answered_500_and_logged(
    runtime_api: ApiFactory, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api = await runtime_api()
    call, delivered = await api.handed_out()

    def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(api.pool, "respond", broken)
    reply = await api.runtime.respond(delivered.request_id, "done")

    assert reply.status == 500
    assert reply.document() == {"errorMessage": "unexpected error", "errorType": "RuntimeApiFault"}
    logged = capsys.readouterr().out
    assert "runtime api call failed" in logged
    assert "RuntimeError: a bug" in logged  # with its traceback
    monkeypatch.undo()
    await api.runtime.respond(delivered.request_id, "done")  # the API serves on
    assert (await call).payload == b'"done"'


async def test_an_endless_header_is_refused_before_it_grows_past_the_head_bound(
    runtime_api: ApiFactory,
) -> None:
    api = await runtime_api()
    reader, writer = await raw_connection(api)
    writer.write(b"GET / HTTP/1.1\r\nX-Endless: ")
    sent = 0
    with contextlib.suppress(ConnectionError):
        while sent < 16 * MAX_HEAD_BYTES and not reader.at_eof():
            writer.write(b"a" * 4096)  # one header that never ends, in many reads
            await writer.drain()
            sent += 4096
            await asyncio.sleep(0)

    reply = b""
    with contextlib.suppress(ConnectionError):  # closed with bytes unread: maybe a reset
        reply = await asyncio.wait_for(reader.read(), timeout=5)

    assert reply == b"" or reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert sent < 4 * MAX_HEAD_BYTES  # cut off near the bound, not at the test's own limit
    writer.close()


KEEPALIVE_S = 0.2


def one_function_pool(backend: FakeBackend) -> Pool:
    """A pool of ``fn`` (one sandbox at most), for a test that serves it itself."""
    return Pool(
        functions={"fn": function_spec(max_concurrency=1)},
        backend=backend,
        settings=Settings(queue_size=10, shutdown_grace_s=0.1, reap_interval_s=3600),
        runtime_api="127.0.0.1:9001",
        clock=Clock(),
        sink=RecordingSink(),
    )


async def test_a_later_request_whose_head_never_ends_is_closed_after_the_keepalive_time(
    runtime_api: ApiFactory,
) -> None:
    api = await runtime_api(keepalive_s=KEEPALIVE_S)
    reader, writer = await raw_connection(api)
    writer.write(b"GET / HTTP/1.1\r\nHost: someone\r\n\r\n")
    first = await reader.readuntil(b"}")  # a whole request, answered: the guard is off
    writer.write(b"GET / HTTP/1.1\r\nHost: ")  # then a head that stops half-way
    started = time.monotonic()

    rest = await asyncio.wait_for(reader.read(), timeout=3)

    assert first.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert rest == b""
    assert 0.1 <= time.monotonic() - started < 2.5
    writer.close()


async def test_a_poll_outlives_the_keepalive_time(runtime_api: ApiFactory) -> None:
    api = await runtime_api(keepalive_s=KEEPALIVE_S)
    await api.serve_one()
    waiting = asyncio.create_task(api.runtime.next())

    await asyncio.sleep(KEEPALIVE_S * 4)  # idle, yet polling
    call = api.invoke(Invocation(payload=b'"later"'))

    delivered = await asyncio.wait_for(waiting, timeout=2)
    assert delivered.payload == b'"later"'
    await api.runtime.respond(delivered.request_id, "done")
    assert (await call).payload == b'"done"'


async def test_a_runtime_expecting_100_continue_gets_it_before_sending_its_answer(
    runtime_api: ApiFactory,
) -> None:
    api = await runtime_api()
    call, delivered = await api.handed_out()
    reader, writer = await raw_connection(api)
    body = b'"curl"'
    writer.write(answer_head(api, delivered.request_id, len(body), "Expect: 100-continue\r\n"))

    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=2)
    writer.write(body)
    final = await asyncio.wait_for(reader.readuntil(b"}"), timeout=2)

    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert final.startswith(b"HTTP/1.1 202 Accepted\r\n")
    assert (await call).payload == body
    writer.close()


async def test_an_answer_over_the_limit_fails_the_call_before_its_body_ends(
    runtime_api: ApiFactory,
) -> None:
    api = await runtime_api()
    call, delivered = await api.handed_out()
    _, writer = await raw_connection(api)
    writer.write(answer_head(api, delivered.request_id, 2 * MAX_RESPONSE_BYTES))
    writer.write(b"x" * (MAX_RESPONSE_BYTES + 1))  # past the limit; the rest never comes
    await writer.drain()

    result = await asyncio.wait_for(call, timeout=2)

    assert result.error_type == "Function.ResponseSizeTooLarge"
    writer.close()


async def test_a_stream_cut_by_the_gateway_stopping_is_broken_for_the_caller() -> None:
    backend = FakeBackend(address=LOOPBACK)
    pool = one_function_pool(backend)
    async with serving_runtime_api(pool, REGION) as address:
        runtime = FakeRuntime(address, backend)
        call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"{}")))
        await backend.wait_started()
        delivered = await runtime.next()
        never = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            yield b"first"
            await never.wait()
            yield b"never sent"

        posting = asyncio.create_task(runtime.stream(delivered.request_id, body(), "text/plain"))
        result = await call
        assert result.stream is not None
        chunks = result.stream.chunks()
        assert await anext(chunks) == b"first"
    # The Runtime API has closed (the gateway stops) with the stream still open.

    with pytest.raises(StreamBroken, match="stopped mid-stream"):
        await asyncio.wait_for(anext(chunks), timeout=2)
    posting.cancel()
    await asyncio.gather(posting, return_exceptions=True)
    await runtime.close()
    await pool.close()


async def test_a_large_answer_read_whole_in_one_go_keeps_its_connection(
    runtime_api: ApiFactory,
) -> None:
    # A whole request larger than the head bound can arrive in one read: only a head counts.
    api = await runtime_api()
    call, delivered = await api.handed_out()
    reader, writer = await raw_connection(api)
    body = b'"' + b"x" * (4 * MAX_HEAD_BYTES) + b'"'
    writer.write(answer_head(api, delivered.request_id, len(body)) + body)
    accepted = await asyncio.wait_for(reader.readuntil(b"}"), timeout=2)
    next_call = api.invoke(Invocation(payload=b'"again"'))
    writer.write(poll_head(api))

    again = await asyncio.wait_for(reader.readuntil(b'"again"'), timeout=2)

    assert accepted.startswith(b"HTTP/1.1 202 Accepted\r\n")
    assert (await call).payload == body
    assert again.startswith(b"HTTP/1.1 200 OK\r\n")  # the same connection serves on
    await api.runtime.respond(request_id_in(again), "done")
    assert (await next_call).payload == b'"done"'
    writer.close()


async def test_endless_trailers_are_refused_like_an_endless_header(runtime_api: ApiFactory) -> None:
    api = await runtime_api()
    _, delivered = await api.handed_out()
    reader, writer = await raw_connection(api)
    writer.write(
        f"POST {RUNTIME_PATH}/invocation/{delivered.request_id}/response HTTP/1.1\r\n"
        f"Host: {api.runtime.host}\r\nTransfer-Encoding: chunked\r\n\r\n"
        '2\r\n""\r\n0\r\nX-Endless: '.encode()  # the body ends; its trailers never do
    )
    sent = 0
    with contextlib.suppress(ConnectionError):
        while sent < 16 * MAX_HEAD_BYTES and not reader.at_eof():
            writer.write(b"a" * 4096)
            await writer.drain()
            sent += 4096
            await asyncio.sleep(0)

    assert sent < 4 * MAX_HEAD_BYTES
    writer.close()


async def test_the_connection_of_a_runtime_running_a_long_invocation_stays_open(
    runtime_api: ApiFactory,
) -> None:
    api = await runtime_api(keepalive_s=KEEPALIVE_S)
    call = api.invoke(Invocation(payload=b'"long"'))
    await api.backend.wait_started()
    reader, writer = await raw_connection(api)
    writer.write(poll_head(api))
    delivered = await reader.readuntil(b'"long"')

    await asyncio.sleep(KEEPALIVE_S * 4)  # the function runs on
    body = b'"done"'
    writer.write(answer_head(api, request_id_in(delivered), len(body)) + body)

    accepted = await asyncio.wait_for(reader.readuntil(b"}"), timeout=2)
    assert accepted.startswith(b"HTTP/1.1 202 Accepted\r\n")
    assert (await call).payload == body
    writer.close()


async def test_the_rest_of_a_read_after_an_early_answer_is_not_parsed(
    runtime_api: ApiFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    api = await runtime_api()
    call, delivered = await api.handed_out()
    head = (
        f"POST {RUNTIME_PATH}/invocation/not-{delivered.request_id}/response HTTP/1.1\r\n"
        f"Host: {api.runtime.host}\r\nLambda-Runtime-Function-Response-Mode: streaming\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )

    # A stream for another invocation is refused at its head, before its body is read;
    # the body's first chunk came in the same read.
    reply = await exchange(api.runtime.runtime_api, head.encode() + b"5\r\nfirst\r\n")

    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"\r\nConnection: close" in reply
    assert "request refused" not in capsys.readouterr().out  # the rest was dropped quietly
    await api.runtime.respond(delivered.request_id, "real")
    assert (await call).payload == b'"real"'


async def test_an_absolute_uri_is_routed_by_its_path(runtime_api: ApiFactory) -> None:
    api = await runtime_api()
    call = api.invoke(Invocation(payload=b'"absolute"'))
    await api.backend.wait_started()
    target = f"http://{api.runtime.host}{RUNTIME_PATH}/invocation/next"
    request = f"GET {target} HTTP/1.1\r\nHost: {api.runtime.host}\r\nConnection: close\r\n\r\n"

    reply = await exchange(api.runtime.runtime_api, request.encode())

    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert reply.endswith(b'"absolute"')
    await api.runtime.respond(request_id_in(reply), "done")
    assert (await call).payload == b'"done"'


async def test_a_head_request_is_answered_and_its_connection_closed(
    runtime_api: ApiFactory,
) -> None:
    api = await runtime_api()
    await api.serve_one()
    reply = await exchange(api.runtime.runtime_api, poll_head(api, method="HEAD"))

    assert reply.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert b"\r\nConnection: close\r\n" in reply
