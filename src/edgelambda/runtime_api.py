"""The Lambda Runtime API (2018-06-01) that function containers poll.

It listens only on the function network. A caller is identified by its address and by the
host name it calls (its ``AWS_LAMBDA_RUNTIME_API``, which carries its sandbox's secret token):
each container can receive and answer only its own sandbox's invocations, even at an address
the engine gave another container before; anyone else gets 403.

It is served without aiohttp's web framework, by one asyncio protocol per connection around
httptools' parser (llhttp, as uvicorn's ``httptools_impl`` uses it). Every invocation crosses
this API twice, the runtime's ``next`` poll and its answer, and aiohttp's request, routing,
middleware and response objects made those two exchanges cost a fifth of the gateway's CPU
per invocation: side by side under 8 clients, 0.36 ms per request fell to 0.29-0.30 ms with
this protocol. The calls are four, fixed, and made by our own sandboxes one at a time, so a
small protocol serves them: a request is routed when its head is complete (a head is bounded
in size and, on every request, in time), a ``next`` poll is answered from the pool's future
with one write, an answer is read whole up to Lambda's limit (past it the call fails at
once), ``Expect: 100-continue`` is answered as curl expects, and a streamed answer is
passed on chunk by chunk with the runtime's reads paused while the caller is behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from http import HTTPStatus
from typing import Final, cast
from urllib.parse import unquote

import httptools
import structlog

from edgelambda.aws import function_arn
from edgelambda.errors import (
    BadRequest,
    EdgeLambdaError,
    Forbidden,
    MethodNotAllowed,
    PayloadTooLarge,
    RouteNotFound,
    RuntimeApiFault,
)
from edgelambda.invocation import (
    MAX_RESPONSE_BYTES,
    TOO_LARGE_ERROR_TYPE,
    Invocation,
    ResponseStream,
    too_large_result,
)
from edgelambda.listener import ConnectionGuard, ConnectionLimits
from edgelambda.pool import Pool
from edgelambda.sandbox import Sandbox, SandboxState
from edgelambda.tasks import TaskSet

log = structlog.get_logger(__name__)

PREFIX = "/2018-06-01/runtime"
MAX_HEAD_BYTES = 64 * 1024  # request line and headers; a runtime sends a few hundred bytes
# Past Lambda's limit an answer is read on and dropped, to answer 413 when it ends, for at
# most this much more; then the connection is cut.
MAX_DROPPED_BYTES = MAX_RESPONSE_BYTES
STREAM_HIGH_WATER = 16  # streamed chunks not yet taken by the caller before reads pause

# The request headers the API reads, lower-cased as they are compared.
HOST = b"host"
CONTENT_TYPE = b"content-type"
RESPONSE_MODE = b"lambda-runtime-function-response-mode"
ERROR_TYPE = b"lambda-runtime-function-error-type"
EXPECT = b"expect"
READ_HEADERS = frozenset({HOST, CONTENT_TYPE, RESPONSE_MODE, ERROR_TYPE, EXPECT})
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Call(Enum):
    NEXT = "next"
    RESPONSE = "response"
    ERROR = "error"
    INIT_ERROR = "init error"


@dataclass(frozen=True)
class Route:
    call: Call
    request_id: str = ""


def route(method: str, target: str) -> Route:
    """The call a request names (its target may carry a query, which is ignored); raises
    RouteNotFound or MethodNotAllowed."""
    path = unquote(target.partition("?")[0])
    parts = path.removeprefix(PREFIX).split("/") if path.startswith(PREFIX + "/") else []
    match parts:
        case ["", "invocation", "next"]:
            found, allowed = Route(Call.NEXT), "GET"
        case ["", "init", "error"]:
            found, allowed = Route(Call.INIT_ERROR), "POST"
        case ["", "invocation", request_id, "response"] if request_id:
            found, allowed = Route(Call.RESPONSE, request_id), "POST"
        case ["", "invocation", request_id, "error"] if request_id:
            found, allowed = Route(Call.ERROR, request_id), "POST"
        case _:
            raise RouteNotFound(f"{path} is not a Runtime API call")
    if method != allowed:
        raise MethodNotAllowed(frozenset({allowed}))
    return found


def encode_response(
    status: int, headers: Mapping[str, str], body: bytes, *, keep_alive: bool = True
) -> bytes:
    """An HTTP/1.1 response, head and body in one buffer for one write. Header values are
    UTF-8, as aiohttp writes them; a line break in one is refused (ValueError)."""
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name} holds a line break")
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def invocation_headers(invocation: Invocation, arn: str) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
        "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
        "Lambda-Runtime-Invoked-Function-Arn": arn,
    }
    if invocation.trace_id:
        headers["Lambda-Runtime-Trace-Id"] = invocation.trace_id
    if invocation.client_context:
        headers["Lambda-Runtime-Client-Context"] = invocation.client_context
    return headers


ACCEPTED_HEADERS: Final = {"Content-Type": "application/json"}
ACCEPTED_BODY: Final = b'{"status": "OK"}'


def error_type_of(payload: bytes) -> str:
    """The ``errorType`` of an error document, when the header did not carry it."""
    try:
        document = json.loads(payload)
    except ValueError:
        return "Runtime.Unknown"
    error_type = document.get("errorType") if isinstance(document, dict) else None
    return error_type if isinstance(error_type, str) and error_type else "Runtime.Unknown"


class RuntimeApi:
    """The Runtime API's listener: its connections, and the few tasks a call needs (a
    caller not registered yet, a streamed answer)."""

    def __init__(
        self, pool: Pool, *, region: str, limits: ConnectionLimits, keepalive_s: float
    ) -> None:
        self.pool = pool
        self.region = region
        self.limits = limits
        self.keepalive_s = keepalive_s
        self.connections: set[RuntimeConnection] = set()
        self.tasks = TaskSet()
        self._server: asyncio.Server | None = None

    async def start(self, sock: socket.socket) -> None:
        guard = ConnectionGuard(lambda: RuntimeConnection(self), self.limits)
        self._server = await asyncio.get_running_loop().create_server(guard, sock=sock)

    async def close(self) -> None:
        """Stop listening and drop every connection: a runtime's pending poll ends as a
        disconnected runtime's does."""
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.abort()
        tasks = self.tasks.running()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def arn(self, sandbox: Sandbox) -> str:
        return function_arn(sandbox.function.name, self.region)


class _Broken:
    """Put on a streamed answer's feed when the runtime's connection drops."""


BROKEN: Final = _Broken()
StreamFeed = asyncio.Queue[bytes | _Broken | None]  # None: the body ended


@dataclass(eq=False, slots=True)
class _Exchange:
    """One request on a connection, from its first byte to its answer."""

    began_at: float = 0.0  # loop time of its first byte
    has_head: bool = False  # its request line and headers are complete
    target: bytearray = field(default_factory=bytearray)
    headers: dict[bytes, bytes] = field(default_factory=dict)
    head_bytes: int = 0
    keep_alive: bool = True
    route: Route | EdgeLambdaError | None = None
    sandbox: Sandbox | None = None
    body: list[bytes] = field(default_factory=list)
    body_bytes: int = 0  # kept, or read and dropped past the limit
    has_failed_too_large: bool = False
    is_complete: bool = False
    is_answered: bool = False
    poll: asyncio.Future[Invocation] | None = None
    delivering: Invocation | None = None  # handed out, still in the socket's buffer
    feed: StreamFeed | None = None  # a streamed answer's chunks

    @property
    def is_too_large(self) -> bool:
        return self.body_bytes > MAX_RESPONSE_BYTES

    @property
    def is_under_way(self) -> bool:
        return self.poll is not None or self.feed is not None

    def header(self, name: bytes) -> str:
        return self.headers.get(name, b"").decode("latin-1")


class RuntimeConnection(asyncio.Protocol):
    """One runtime's connection: its requests one at a time (runtimes do not pipeline; a
    request sent before the last was answered closes the connection)."""

    def __init__(self, api: RuntimeApi) -> None:
        self._api = api
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._address = ""
        self._exchange: _Exchange | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._idle_since = 0.0  # loop time of the last answer
        self._is_reading_paused = False
        self._is_writing_paused = False
        # Read since the parser last passed on a head, a piece of body or a request's end.
        self._stalled_bytes = 0
        self._has_progressed = False
        self._sandbox: Sandbox | None = None  # the sandbox this connection last served

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's does not derive from asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if peer else ""
        # Paused (told) whenever a write leaves bytes behind, resumed once they are sent: an
        # invocation counts as delivered only when it has left the gateway.
        self._transport.set_write_buffer_limits(high=0)
        self._api.connections.add(self)
        self._idle_since = asyncio.get_running_loop().time()
        self._check_idle()

    def data_received(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            return  # answered early and closing: the rest is not read
        self._has_progressed = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:  # raised by one of ours
            if not isinstance(exc.__context__, _Closing):
                self._refuse(_as_error(exc.__context__ or exc, self._address))
            return
        except httptools.HttpParserUpgrade:
            self._refuse(BadRequest("the Runtime API does not upgrade connections"))
            return
        except httptools.HttpParserError as exc:
            self._refuse(BadRequest(f"malformed request: {exc}"))
            return
        if self._has_progressed:
            self._stalled_bytes = 0
            return
        # httptools holds a header or trailer until its end arrives: bound what a request
        # may send without getting anywhere, across reads, or one endless header would grow
        # (and be copied) without end.
        self._stalled_bytes += len(data)
        if self._stalled_bytes > MAX_HEAD_BYTES:
            self._refuse(BadRequest(_HEAD_TOO_LARGE))

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._api.connections.discard(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        exchange, self._exchange = self._exchange, None
        if exchange is None:
            return
        if exchange.sandbox is not None and exchange.poll is not None:
            # The runtime vanished while polling, or before it was told of its invocation.
            self._api.pool.abandon_poll(exchange.sandbox, exchange.poll)
        elif exchange.sandbox is not None and exchange.delivering is not None:
            self._api.pool.undeliverable(exchange.sandbox, exchange.delivering)
        if exchange.feed is not None and not exchange.is_complete:
            exchange.feed.put_nowait(BROKEN)

    def pause_writing(self) -> None:
        self._is_writing_paused = True

    def resume_writing(self) -> None:
        self._is_writing_paused = False
        exchange = self._exchange
        if exchange is not None and exchange.delivering is not None:
            exchange.delivering = None
            self._finish(exchange)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- httptools' callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._transport is None or self._transport.is_closing():
            raise _Closing  # answered and closing: the rest of this read is not parsed
        if self._exchange is not None:  # stops the parser: see data_received
            raise BadRequest("a request was sent before the last was answered")
        self._exchange = _Exchange(began_at=asyncio.get_running_loop().time())

    def on_url(self, url: bytes) -> None:
        exchange = self._current()
        exchange.target += url
        self._count_head(exchange, len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        exchange = self._current()
        self._count_head(exchange, len(name) + len(value))
        name = name.lower()
        if name in READ_HEADERS:
            exchange.headers[name] = value

    def on_headers_complete(self) -> None:
        exchange = self._current()
        exchange.has_head = True
        self._has_progressed = True
        method = self._parser.get_method().decode("latin-1")
        # A HEAD answer carries a body here: the connection cannot go on after it.
        exchange.keep_alive = self._parser.should_keep_alive() and method != "HEAD"
        try:
            exchange.route = route(method, _path_of(bytes(exchange.target)))
        except EdgeLambdaError as exc:
            exchange.route = exc  # answered once the caller is known: a stranger gets 403
        sandbox = self._api.pool.caller(self._address, exchange.header(HOST))
        if sandbox is None:
            # Not registered yet (its start is still being recorded), or a stranger.
            self._pause_reading()
            self._api.tasks.spawn(self._identify(exchange))
        else:
            self._identified(exchange, sandbox)

    def on_body(self, body: bytes) -> None:
        exchange = self._current()
        self._has_progressed = True
        if exchange.feed is not None:
            exchange.feed.put_nowait(body)
            if exchange.feed.qsize() >= STREAM_HIGH_WATER:
                self._pause_reading()
            return
        was_within = not exchange.is_too_large
        exchange.body_bytes += len(body)
        if not exchange.is_too_large:
            exchange.body.append(body)
        elif exchange.body_bytes > MAX_RESPONSE_BYTES + MAX_DROPPED_BYTES:
            raise PayloadTooLarge(f"the answer went on {MAX_DROPPED_BYTES} bytes past the limit")
        elif was_within:  # it crossed the limit now: the rest is read and dropped
            exchange.body.clear()
            found = exchange.route
            if exchange.sandbox is not None and isinstance(found, Route):
                # The caller is answered now, not when (or if) the body ends.
                with contextlib.suppress(EdgeLambdaError):  # answered with 413 at the end
                    self._fail_too_large(exchange, exchange.sandbox, found)

    def on_message_complete(self) -> None:
        exchange = self._current()
        self._has_progressed = True
        exchange.is_complete = True
        if exchange.feed is not None:
            exchange.feed.put_nowait(None)
        elif exchange.sandbox is not None:
            self._act(exchange, exchange.sandbox)

    # -- the calls ----------------------------------------------------------------------

    async def _identify(self, exchange: _Exchange) -> None:
        host = exchange.header(HOST)
        try:
            sandbox = await self._api.pool.sandbox_calling(self._address, host)
            if exchange is not self._exchange:
                return  # the connection dropped meanwhile
            self._resume_reading()
            if sandbox is None:
                log.warning("runtime api call from a stranger", remote=self._address, host=host)
                self._fail(exchange, Forbidden(f"{self._address} is not a function sandbox"))
                return
            self._identified(exchange, sandbox)
        except Exception as exc:  # outside the parser: answered here, not in data_received
            self._refuse(_as_error(exc, self._address))

    def _identified(self, exchange: _Exchange, sandbox: Sandbox) -> None:
        """The caller is ``sandbox``: a streamed answer starts now, any other call once the
        whole request has arrived."""
        exchange.sandbox = self._sandbox = sandbox
        found = exchange.route
        if (
            not exchange.is_complete
            and isinstance(found, Route)
            and found.call is not Call.NEXT
            and exchange.headers.get(EXPECT, b"").lower() == b"100-continue"
            and self._transport is not None
        ):
            self._transport.write(CONTINUE)  # curl waits for it before sending a body
        if isinstance(found, Route) and found.call is Call.RESPONSE and _is_streaming(exchange):
            self._stream(exchange, sandbox, found)
        elif exchange.is_complete:
            self._act(exchange, sandbox)

    def _act(self, exchange: _Exchange, sandbox: Sandbox) -> None:
        found = exchange.route
        if isinstance(found, EdgeLambdaError):
            self._fail(exchange, found)
        elif found is None:
            raise AssertionError("a request is acted on before it is routed")
        elif found.call is Call.NEXT:
            self._poll(exchange, sandbox)
        else:
            self._answer_post(exchange, sandbox, found)

    def _poll(self, exchange: _Exchange, sandbox: Sandbox) -> None:
        try:
            poll = self._api.pool.poll(sandbox)
        except EdgeLambdaError as exc:
            self._fail(exchange, exc)
            return
        exchange.poll = poll
        poll.add_done_callback(lambda _: self._deliver(exchange, sandbox, poll))

    def _deliver(
        self, exchange: _Exchange, sandbox: Sandbox, poll: asyncio.Future[Invocation]
    ) -> None:
        if exchange is not self._exchange or poll.cancelled():
            return  # the connection dropped: the pool was told then
        exchange.poll = None
        error = poll.exception()
        if error is not None:
            self._fail(exchange, _as_error(error, self._address))
            return
        invocation = poll.result()
        try:
            headers = invocation_headers(invocation, self._api.arn(sandbox))
            response = encode_response(
                200, headers, invocation.payload, keep_alive=exchange.keep_alive
            )
        except Exception as exc:
            # A bug (a header value no runtime could read): the runtime is cut off, so its
            # container exits and the invocation fails as a crashed runtime's, not handed
            # to another sandbox to fail again.
            self._refuse(_as_error(exc, self._address))
            return
        exchange.delivering = invocation
        self._send(exchange, response)

    def _answer_post(self, exchange: _Exchange, sandbox: Sandbox, found: Route) -> None:
        pool = self._api.pool
        try:
            if exchange.is_too_large:
                self._fail_too_large(exchange, sandbox, found)
                raise PayloadTooLarge(f"the answer is over {MAX_RESPONSE_BYTES} bytes")
            payload = b"".join(exchange.body)
            if found.call is Call.RESPONSE:
                pool.respond(sandbox, found.request_id, payload)
            else:
                error_type = exchange.header(ERROR_TYPE) or error_type_of(payload)
                if found.call is Call.ERROR:
                    pool.fail(sandbox, found.request_id, payload, error_type)
                else:
                    pool.init_failed(sandbox, payload, error_type)
        except EdgeLambdaError as exc:
            self._fail(exchange, exc)
        else:
            self._reply(exchange, 202, ACCEPTED_HEADERS, ACCEPTED_BODY)

    def _fail_too_large(self, exchange: _Exchange, sandbox: Sandbox, found: Route) -> None:
        """Lambda's error for an answer over its limit, once: as the limit is crossed, or
        when the body ends if the caller was not known yet then."""
        if exchange.has_failed_too_large or found.call is Call.INIT_ERROR:
            return
        exchange.has_failed_too_large = True
        result = too_large_result()
        self._api.pool.fail(sandbox, found.request_id, result.payload, TOO_LARGE_ERROR_TYPE)

    def _stream(self, exchange: _Exchange, sandbox: Sandbox, found: Route) -> None:
        """Lambda's streaming response mode: the body goes on to the caller as it arrives."""
        stream = ResponseStream(exchange.header(CONTENT_TYPE) or "application/octet-stream")
        try:
            self._api.pool.respond_stream(sandbox, found.request_id, stream)
        except EdgeLambdaError as exc:
            self._fail(exchange, exc)
            return
        feed: StreamFeed = asyncio.Queue()
        for chunk in exchange.body:  # what arrived before the caller was known
            feed.put_nowait(chunk)
        exchange.body.clear()
        if exchange.is_complete:
            feed.put_nowait(None)
        exchange.feed = feed
        self._api.tasks.spawn(self._pass_on(exchange, sandbox, stream, feed))

    async def _pass_on(
        self,
        exchange: _Exchange,
        sandbox: Sandbox,
        stream: ResponseStream,
        feed: StreamFeed,
    ) -> None:
        error: str | None = "the gateway stopped mid-stream"
        try:
            while (chunk := await feed.get()) is not None:
                if isinstance(chunk, _Broken):
                    error = "the runtime's connection closed mid-stream"
                    break
                await stream.put(chunk)
                if feed.qsize() < STREAM_HIGH_WATER // 2:
                    self._resume_reading()
            else:
                error = None
        finally:
            # The caller's stream ends first, then the sandbox's (and with it the deadline
            # that covers the whole stream), as before this protocol; one cancelled at
            # shutdown still hears the end.
            if error is not None:
                log.warning("response stream broken", function=sandbox.function.name, error=error)
            await stream.end(error)
            try:
                self._api.pool.stream_ended(sandbox)
            except Exception as exc:  # a bug: the runtime is cut off, not left waiting
                self._refuse(_as_error(exc, self._address))
        self._reply(exchange, 202, ACCEPTED_HEADERS, ACCEPTED_BODY)

    # -- the connection's plumbing ------------------------------------------------------

    def _current(self) -> _Exchange:
        exchange = self._exchange
        if exchange is None:
            if self._transport is None or self._transport.is_closing():
                raise _Closing  # answered early: the rest of this read is not parsed
            raise BadRequest("a request part outside a request")
        return exchange

    def _count_head(self, exchange: _Exchange, size: int) -> None:
        exchange.head_bytes += size
        if exchange.head_bytes > MAX_HEAD_BYTES:
            raise BadRequest(_HEAD_TOO_LARGE)

    def _reply(
        self, exchange: _Exchange, status: int, headers: Mapping[str, str], body: bytes
    ) -> None:
        """Answer ``exchange``, unless it was answered or its connection is gone. Answered
        before its body was read (a stranger, a refused stream), the connection cannot go
        on."""
        exchange.keep_alive = exchange.keep_alive and exchange.is_complete
        self._send(exchange, encode_response(status, headers, body, keep_alive=exchange.keep_alive))

    def _send(self, exchange: _Exchange, response: bytes) -> None:
        if exchange is not self._exchange or exchange.is_answered or self._transport is None:
            return
        exchange.is_answered = True
        self._transport.write(response)
        if exchange.delivering is not None and self._is_writing_paused:
            return  # finished once the invocation has left (resume_writing)
        exchange.delivering = None
        self._finish(exchange)

    def _finish(self, exchange: _Exchange) -> None:
        """The connection waits for its next request (or closes)."""
        self._exchange = None
        if self._transport is None:
            return
        if not exchange.keep_alive:
            self._transport.close()
            return
        self._resume_reading()
        self._idle_since = asyncio.get_running_loop().time()

    def _fail(self, exchange: _Exchange, exc: EdgeLambdaError) -> None:
        """Answer with an error in the Runtime API's own shape, ``{"errorMessage",
        "errorType"}``."""
        body = json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__})
        headers = {"Content-Type": "application/json", **exc.headers}
        self._reply(exchange, exc.status, headers, body.encode())

    def _refuse(self, error: EdgeLambdaError) -> None:
        """A request the parser cannot go on with: answered, and the connection closed."""
        log.warning("runtime api request refused", remote=self._address, error=str(error))
        exchange = self._exchange
        if exchange is None or exchange.is_answered or exchange.is_under_way:
            self.abort()  # between requests, or a poll, a delivery or a stream is under way
            return
        exchange.keep_alive = False
        self._fail(exchange, error)

    def _check_idle(self) -> None:
        """Close the connection once it has waited ``keepalive_s`` for a request, or for the
        rest of a request's head (aiohttp's keep-alive, and a slow client's bound on every
        request, not only the first). One timer per connection, moved on as it finds the
        connection in use, not one per request."""
        loop, keepalive_s = asyncio.get_running_loop(), self._api.keepalive_s
        exchange, sandbox = self._exchange, self._sandbox
        if exchange is None and sandbox is not None and sandbox.state is SandboxState.BUSY:
            # Its runtime runs an invocation and will post the answer on this connection:
            # closing it now could race that post (Lambda never closes it).
            waiting_since: float | None = None
        elif exchange is None:
            waiting_since = self._idle_since
        else:
            waiting_since = None if exchange.has_head else exchange.began_at
        delay = keepalive_s
        if waiting_since is not None:
            waited_s = loop.time() - waiting_since
            if waited_s >= keepalive_s:
                self._idle_timer = None
                if self._transport is not None:
                    self._transport.close()
                return
            delay = keepalive_s - waited_s
        self._idle_timer = loop.call_later(delay, self._check_idle)

    def _pause_reading(self) -> None:
        if not self._is_reading_paused and self._transport is not None:
            self._is_reading_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._is_reading_paused and self._transport is not None:
            self._is_reading_paused = False
            self._transport.resume_reading()


_HEAD_TOO_LARGE = f"the request's head or trailers are over {MAX_HEAD_BYTES} bytes"


class _Closing(Exception):
    """Raised in a parser callback once the connection is closing: parsing stops quietly."""


def _path_of(target: bytes) -> str:
    """A request target's path: as sent, or out of an absolute URI (``http://host/path``)."""
    if not target.startswith(b"/"):
        with contextlib.suppress(httptools.HttpParserInvalidURLError):
            target = httptools.parse_url(target).path or target
    return target.decode("latin-1")


def _as_error(exc: BaseException, address: str) -> EdgeLambdaError:
    """``exc`` as the error a runtime is answered with: one of ours as it is; anything else
    is a bug, logged with its traceback and answered 500."""
    if isinstance(exc, EdgeLambdaError):
        return exc
    log.error("runtime api call failed", remote=address, exc_info=exc)
    return RuntimeApiFault("unexpected error")


def _is_streaming(exchange: _Exchange) -> bool:
    return exchange.headers.get(RESPONSE_MODE, b"").lower() == b"streaming"
