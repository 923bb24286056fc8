"""The Lambda Runtime API (2018-06-01) that function containers poll.

It listens only on the function network. A caller is identified by its address and by the
host name it calls (its ``AWS_LAMBDA_RUNTIME_API``, which carries its sandbox's secret token):
each container can receive and answer only its own sandbox's invocations, even at an address
the engine gave another container before; anyone else gets 403.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import aiohttp
import structlog
from aiohttp import web

from edgelambda.aws import function_arn
from edgelambda.errors import EdgeLambdaError, Forbidden, PayloadTooLarge
from edgelambda.invocation import (
    MAX_RESPONSE_BYTES,
    TOO_LARGE_ERROR_TYPE,
    Invocation,
    ResponseStream,
    too_large_result,
)
from edgelambda.pool import Pool
from edgelambda.sandbox import Sandbox

log = structlog.get_logger(__name__)

PREFIX = "/2018-06-01/runtime"
RESPONSE_MODE_HEADER = "Lambda-Runtime-Function-Response-Mode"

POOL_KEY = web.AppKey("pool", Pool)
REGION_KEY = web.AppKey("region", str)
SANDBOX_KEY = web.RequestKey("sandbox", Sandbox)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_runtime_app(pool: Pool, *, region: str) -> web.Application:
    """The Runtime API application; served by its own runner on the function network."""
    app = web.Application(client_max_size=MAX_RESPONSE_BYTES, middlewares=[runtime_call])
    app[POOL_KEY] = pool
    app[REGION_KEY] = region
    app.router.add_get(f"{PREFIX}/invocation/next", next_invocation)
    app.router.add_post(f"{PREFIX}/invocation/{{request_id}}/response", post_response)
    app.router.add_post(f"{PREFIX}/invocation/{{request_id}}/error", post_error)
    app.router.add_post(f"{PREFIX}/init/error", post_init_error)
    return app


@web.middleware
async def runtime_call(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Who calls: only a sandbox, by its own name from its own address; and errors in the
    Runtime API's own shape, ``{"errorMessage", "errorType"}``. One middleware, not two:
    it wraps both of every invocation's calls."""
    try:
        pool = request.app[POOL_KEY]
        sandbox = await pool.sandbox_calling(request.remote or "", request.host)
        if sandbox is None:
            log.warning(
                "runtime api call from a stranger", remote=request.remote, host=request.host
            )
            raise Forbidden(f"{request.remote} is not a function sandbox")
        request[SANDBOX_KEY] = sandbox
        return await handler(request)
    except EdgeLambdaError as exc:
        body = {"errorMessage": str(exc), "errorType": type(exc).__name__}
        return web.json_response(body, status=exc.status)


def _sandbox(request: web.Request) -> Sandbox:
    sandbox: Sandbox = request[SANDBOX_KEY]
    return sandbox


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


async def next_invocation(request: web.Request) -> web.StreamResponse:
    sandbox = _sandbox(request)
    pool = request.app[POOL_KEY]
    invocation = await pool.next_invocation(sandbox)
    arn = function_arn(sandbox.function.name, request.app[REGION_KEY])
    # A Response, not a StreamResponse: aiohttp sends its headers and body in one write.
    response = web.Response(body=invocation.payload, headers=invocation_headers(invocation, arn))
    try:
        await response.prepare(request)
        await response.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        # The runtime vanished between taking the invocation and receiving it (a dropped
        # connection cancels this handler, or fails the write).
        pool.undeliverable(sandbox, invocation)
        raise
    return response


async def post_response(request: web.Request) -> web.Response:
    if request.headers.get(RESPONSE_MODE_HEADER, "").lower() == "streaming":
        return await _stream_response(request)
    payload = await _answer(request)
    request.app[POOL_KEY].respond(_sandbox(request), request.match_info["request_id"], payload)
    return _accepted()


async def _answer(request: web.Request) -> bytes:
    """The body a runtime posts as its answer; one over Lambda's response limit fails the
    invocation with Lambda's error for it, and the runtime is told 413."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        result = too_large_result()
        sandbox, request_id = _sandbox(request), request.match_info["request_id"]
        request.app[POOL_KEY].fail(sandbox, request_id, result.payload, TOO_LARGE_ERROR_TYPE)
        raise PayloadTooLarge(f"the answer is over {MAX_RESPONSE_BYTES} bytes") from None


async def _stream_response(request: web.Request) -> web.Response:
    """Lambda's streaming response mode: forward the body chunk by chunk as it arrives."""
    pool, sandbox = request.app[POOL_KEY], _sandbox(request)
    stream = ResponseStream(request.headers.get("Content-Type", "application/octet-stream"))
    pool.respond_stream(sandbox, request.match_info["request_id"], stream)
    # Broken until the body has ended: the runtime's connection dropping shows up as a payload
    # error, or (the Runtime API runs with handler cancellation) as this handler's cancellation.
    error: str | None = "the runtime's connection closed mid-stream"
    try:
        async for chunk in request.content.iter_any():
            await stream.put(chunk)
        error = None
    except (aiohttp.ClientPayloadError, ConnectionError) as exc:
        error = f"the runtime broke off its stream: {exc!r}"
    finally:
        if error is not None:
            log.warning("response stream broken", function=sandbox.function.name, error=error)
        await stream.end(error)
        pool.stream_ended(sandbox)
    return _accepted()


async def post_error(request: web.Request) -> web.Response:
    payload = await _answer(request)
    error_type = request.headers.get("Lambda-Runtime-Function-Error-Type") or _error_type(payload)
    pool = request.app[POOL_KEY]
    pool.fail(_sandbox(request), request.match_info["request_id"], payload, error_type)
    return _accepted()


async def post_init_error(request: web.Request) -> web.Response:
    payload = await request.read()
    error_type = request.headers.get("Lambda-Runtime-Function-Error-Type") or _error_type(payload)
    request.app[POOL_KEY].init_failed(_sandbox(request), payload, error_type)
    return _accepted()


def _accepted() -> web.Response:
    return web.json_response({"status": "OK"}, status=202)


def _error_type(payload: bytes) -> str:
    """The ``errorType`` of an error document, when the header did not carry it."""
    try:
        document = json.loads(payload)
    except ValueError:
        return "Runtime.Unknown"
    error_type = document.get("errorType") if isinstance(document, dict) else None
    return error_type if isinstance(error_type, str) and error_type else "Runtime.Unknown"
