"""The gateway's HTTP application: its routes, the error middleware (the one place errors
become responses), and the handlers of routed functions, the auth endpoint, the Invoke API,
``/health`` and ``/metrics``. What they use is owned by :class:`~edgelambda.server.Server`."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import structlog
from aiohttp import web
from multidict import CIMultiDict

from edgelambda import apigw_event, apigw_result, auth, cors, ids, tracing
from edgelambda.config import Settings
from edgelambda.console import add_console
from edgelambda.containers import ContainerBackend
from edgelambda.errors import (
    EdgeLambdaError,
    FunctionError,
    FunctionTimeout,
    PayloadTooLarge,
    StreamBroken,
    Unauthorized,
)
from edgelambda.invocation import TIMEOUT_ERROR_TYPE, Invocation, InvocationResult, ResponseStream
from edgelambda.invoke_api import INVOKE_PATH, MAX_SYNC_PAYLOAD_BYTES, read_body
from edgelambda.logs import LogRecord, LogSink
from edgelambda.metrics import CONTENT_TYPE
from edgelambda.routing import AuthMode, Route, RoutingTable
from edgelambda.server import Server

log = structlog.get_logger(__name__)

REQUEST_ID_KEY = web.RequestKey("request_id", str)
TRACE_KEY = web.RequestKey("trace", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Lambda's limit on a streamed response: "The maximum response payload size is 200 MB" (Lambda
# Developer Guide, "Invoking a response streaming enabled function using Lambda function URLs";
# a 20 MB soft limit before). Past it the client's connection is cut, so the client sees an
# incomplete body. A buffered result is held to Lambda's 6 MB by the Runtime API (502 here).
MAX_STREAMED_RESULT_BYTES = 200 * 1024 * 1024


SERVER_KEY = web.AppKey("server", Server)


def create_app(
    settings: Settings,
    table: RoutingTable,
    backend: ContainerBackend,
    sink: LogSink | None = None,
) -> web.Application:
    """The gateway application: routed functions, the Invoke API, ``/health``, ``/metrics``,
    and the lifecycle. ``sink`` overrides where function logs go (by default VictoriaLogs
    when configured, else stdout)."""
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=MAX_SYNC_PAYLOAD_BYTES,
        # A kept-alive connection's next request has the header-read bound too (the first
        # one is bounded by the listener, see edgelambda.listener).
        handler_args={"keepalive_timeout": settings.header_read_timeout_s},
    )
    server = app[SERVER_KEY] = Server(settings, table, backend, sink)
    app.cleanup_ctx.append(_gateway_lifecycle)
    app.on_response_prepare.append(_identify_response)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_post(settings.auth_endpoint_path, login)
    app.router.add_post(INVOKE_PATH, invoke)
    add_console(app, server)  # after the gateway's lifecycle: started after it, closed before
    app.router.add_route("*", "/{tail:.*}", routed)
    return app


async def _gateway_lifecycle(app: web.Application) -> AsyncIterator[None]:
    gateway = app[SERVER_KEY]
    try:
        await gateway.start()
        yield
    finally:
        await gateway.close()


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place errors become HTTP responses: ``{"message": ...}`` with the status."""
    request_id = ids.uuid4()
    request[REQUEST_ID_KEY] = request_id
    started_s = time.time()
    request[TRACE_KEY] = tracing.trace_header(request.headers.get("X-Amzn-Trace-Id"), started_s)
    try:
        response = await handler(request)
    except EdgeLambdaError as exc:
        log.info("request failed", path=request.path, status=exc.status, error=str(exc))
        response = web.json_response(exc.body(), status=exc.status, headers=exc.headers)
    except web.HTTPException as exc:  # raised by aiohttp itself, e.g. while reading a body
        response = _error_response(exc.status, exc.reason)
    except Exception:
        log.exception("unhandled error", path=request.path, request_id=request_id)
        response = _error_response(500, "Internal server error")
    request.app[SERVER_KEY].sink.emit(access_record(request, response.status, started_s))
    return response


def access_record(request: web.Request, status: int, started_s: float) -> LogRecord:
    """The gateway's access log line, shipped with the function logs."""
    latency_ms = round((time.time() - started_s) * 1000, 3)
    return LogRecord(
        time_s=started_s,
        message=f"{request.method} {request.path} {status} {latency_ms} ms",
        function="",
        container="gateway",
        stream="access",
        request_id=request[REQUEST_ID_KEY],
        trace_id=request[TRACE_KEY],
        level="error" if status >= 500 else "info",
        fields={
            "method": request.method,
            "path": request.path,
            "status": status,
            "latency_ms": latency_ms,
        },
    )


async def _identify_response(request: web.Request, response: web.StreamResponse) -> None:
    """Every response, streamed ones included, names its request and trace."""
    if REQUEST_ID_KEY in request:
        response.headers["x-amzn-RequestId"] = request[REQUEST_ID_KEY]
        response.headers["X-Amzn-Trace-Id"] = request[TRACE_KEY]


def _error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"message": message}, status=status, headers=headers)


async def health(request: web.Request) -> web.Response:
    """200 while every background loop runs; 503 naming each loop that died (the part of the
    gateway it drove has stopped: scheduling, Event invocations, reaping, log shipping...).
    Either way with the containers by state (busy, ready, frozen, stopped, ...) and the Event
    invocations queued (or running) and dead-lettered, or why the store cannot say."""
    gateway = request.app[SERVER_KEY]
    events = await gateway.event_summary()
    counts = {
        "functions": len(gateway.table.functions),
        "containers": gateway.pool.by_state(),
        "events": events,
    }
    dead = gateway.loops.dead()
    if dead:
        return web.json_response({"status": "unhealthy", **counts, "dead_loops": dead}, status=503)
    return web.json_response({"status": "healthy", **counts})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    body = request.app[SERVER_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def login(request: web.Request) -> web.Response:
    """The original system's token endpoint: API key plus user name and password in,
    ``{"AuthenticationResult": {"IdToken": <jwt>}}`` out. A throttled address gets 429 and a
    body over the cap 413, both before the key is checked."""
    gateway = request.app[SERVER_KEY]
    address = request.remote or ""
    gateway.login_throttle.check(address, time.time())
    body = await _read_login_body(request, gateway.settings.login_max_body_bytes)
    try:
        result = auth.login(
            body,
            api_key=request.headers.get("x-api-key"),
            settings=gateway.settings,
            now_s=time.time(),
            token_id=uuid.uuid4().hex,
        )
    except Unauthorized:  # a wrong key or password: a guess
        gateway.login_throttle.record_failure(address, time.time())
        raise
    gateway.login_throttle.record_success(address)
    return web.json_response(result, headers={"PADMA_USER_AUTHORIZED": "true"})


async def _read_login_body(request: web.Request, limit: int) -> bytes:
    """At most ``limit`` bytes; a longer body (declared or sent chunked) is 413 unread."""
    if (request.content_length or 0) > limit:
        raise PayloadTooLarge(f"login body of {request.content_length} bytes; the limit is {limit}")
    body = bytearray()
    while len(body) <= limit:
        chunk = await request.content.read(limit + 1 - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
    raise PayloadTooLarge(f"login body over the limit of {limit} bytes")


async def invoke(request: web.Request) -> web.Response:
    """The AWS Lambda Invoke API."""
    return await request.app[SERVER_KEY].invoke_api.handle(
        request, request_id=request[REQUEST_ID_KEY], trace_id=request[TRACE_KEY]
    )


async def routed(request: web.Request) -> web.StreamResponse:
    """A request for a function: route, authorise, build the event, invoke, translate."""
    gateway = request.app[SERVER_KEY]
    preflight = _preflight_response(request, gateway.table)
    if preflight is not None:
        return preflight
    match = gateway.table.match(request.method, request.path)
    now_s = time.time()
    claims = _claims(match.route, request, gateway.settings, now_s)
    http_request = await _http_request(request)
    event = apigw_event.build_event(
        http_request,
        match,
        request_id=request[REQUEST_ID_KEY],
        now_ms=int(now_s * 1000),
        claims=claims,
    )
    # OPT_NON_STR_KEYS: header names are multidict's istr, a str subclass orjson refuses as a
    # key otherwise (its README, "OPT_NON_STR_KEYS").
    payload = orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS)
    invocation = Invocation(payload=payload, trace_id=request[TRACE_KEY])
    result = await gateway.pool.invoke(match.route.function, invocation)
    _raise_for_function_error(match.route.function, result)
    if result.stream is not None:
        return await _stream_to_client(request, result.stream, match.route)
    response = apigw_result.parse_result(result.payload, match.route.payload)
    headers = CIMultiDict(response.headers)
    _add_cors_headers(headers, match.route, request.headers.get("Origin"))
    return web.Response(status=response.status, body=response.body, headers=headers)


async def _stream_to_client(
    request: web.Request, stream: ResponseStream, route: Route
) -> web.StreamResponse:
    """Relay a streamed function response chunk by chunk. Before the first byte is sent a
    broken stream is a 502; after it, the connection is cut so the client sees an incomplete
    body, never a complete-looking one."""
    chunks = stream.chunks()
    try:
        head, first = await _stream_head(stream, chunks)
        headers = CIMultiDict(head.headers)
        _add_cors_headers(headers, route, request.headers.get("Origin"))
        response = web.StreamResponse(status=head.status, headers=headers)
        await response.prepare(request)
        try:
            sent = await _write_bounded(response, first, 0)
            async for chunk in chunks:
                sent = await _write_bounded(response, chunk, sent)
        except StreamBroken as exc:
            log.warning("streamed response broken off", function=route.function, error=str(exc))
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response
    except StreamBroken as exc:
        raise FunctionError(str(exc), error_type="Runtime.StreamBroken") from exc
    finally:
        stream.abandon()  # a no-op once drained; frees the runtime if the client left


async def _write_bounded(response: web.StreamResponse, chunk: bytes, sent: int) -> int:
    """Write ``chunk`` after ``sent`` bytes; the bytes sent then. Raises StreamBroken (the
    client's connection is cut) past Lambda's limit on a streamed response."""
    sent += len(chunk)
    if sent > MAX_STREAMED_RESULT_BYTES:
        raise StreamBroken(f"the streamed response is over {MAX_STREAMED_RESULT_BYTES} bytes")
    await response.write(chunk)
    return sent


async def _stream_head(
    stream: ResponseStream, chunks: AsyncIterator[bytes]
) -> tuple[apigw_result.HttpResponse, bytes]:
    """Status and headers of a streamed response, and the body bytes read with them."""
    if stream.content_type != apigw_result.HTTP_INTEGRATION_CONTENT_TYPE:
        return apigw_result.HttpResponse(200, (("Content-Type", stream.content_type),), b""), b""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        split = apigw_result.split_prelude(buffer)
        if split is not None:
            prelude, rest = split
            return apigw_result.prelude_response(prelude), rest
    raise StreamBroken("the stream ended before its prelude")


def _preflight_response(request: web.Request, table: RoutingTable) -> web.Response | None:
    """Answer a CORS preflight for a route with a CORS policy, without invoking anything."""
    requested = request.headers.get("Access-Control-Request-Method")
    if not cors.is_preflight(request.method, requested):
        return None
    found = table.preflight(request.path, requested or "")
    if found is None:
        return None
    policy, methods = found
    headers = cors.preflight_headers(
        policy,
        origin=request.headers.get("Origin"),
        allowed_methods=methods,
    )
    return web.Response(status=204, headers=CIMultiDict(headers))


def _add_cors_headers(headers: CIMultiDict[str], route: Route, origin: str | None) -> None:
    # A function that answers CORS itself keeps its own headers.
    if route.cors is None or "Access-Control-Allow-Origin" in headers:
        return
    for name, value in cors.response_headers(route.cors, origin):
        headers.add(name, value)


def _claims(
    route: Route, request: web.Request, settings: Settings, now_s: float
) -> dict[str, object] | None:
    if route.auth is AuthMode.NONE:
        return None
    authorization = request.headers.get("Authorization")
    return auth.claims_for(authorization, secret=settings.jwt_secret, now_s=now_s)


async def _http_request(request: web.Request) -> apigw_event.HttpRequest:
    body = await read_body(request, PayloadTooLarge)
    return apigw_event.HttpRequest(
        method=request.method,
        path=request.path,
        raw_path=request.rel_url.raw_path,
        raw_query=request.rel_url.raw_query_string,
        headers=tuple(request.headers.items()),
        body=body,
        source_ip=request.remote or "",
        host=request.host,
        protocol=f"HTTP/{request.version.major}.{request.version.minor}",
    )


def _raise_for_function_error(function_name: str, result: InvocationResult) -> None:
    if not result.is_error:
        return
    if result.error_type == TIMEOUT_ERROR_TYPE:
        raise FunctionTimeout(f"{function_name}: {result.payload.decode('utf-8', 'replace')}")
    raise FunctionError(
        f"{function_name}: {result.payload.decode('utf-8', 'replace')}",
        error_type=result.error_type or "Runtime.Unknown",
    )
