"""The AWS Lambda Invoke API (``POST /2015-03-31/functions/{name}/invocations``), so boto3,
aiobotocore and functions calling functions work against the gateway unchanged."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from enum import Enum
from typing import Protocol

import structlog
from aiohttp import web

from edgelambda import auth, sigv4
from edgelambda.aws import function_arn
from edgelambda.config import Settings
from edgelambda.errors import (
    AccessDenied,
    EdgeLambdaError,
    EngineUnavailable,
    EventQueueFull,
    EventStoreError,
    InvalidParameterValue,
    InvalidRequestContent,
    RequestTooLarge,
    ResourceNotFound,
    ServiceError,
    StreamBroken,
    TooManyRequests,
    TooManyRequestsService,
    Unauthorized,
)
from edgelambda.invocation import (
    MAX_RESPONSE_BYTES,
    Invocation,
    InvocationResult,
    ResponseStream,
    too_large_result,
)
from edgelambda.logs import tail
from edgelambda.pool import Pool
from edgelambda.routing import FunctionSpec, RoutingTable
from edgelambda.sigv4 import SignedRequest

log = structlog.get_logger(__name__)

INVOKE_PATH = "/2015-03-31/functions/{function}/invocations"
LATEST = "$LATEST"
MAX_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024  # API Gateway's and Lambda's payload limit
MAX_ASYNC_PAYLOAD_BYTES = 256 * 1024  # Lambda's limit for Event invocations
MAX_CLIENT_CONTEXT_BYTES = 3583
LOG_SETTLE_S = 2.0  # a backstop: the journal closes every log (output, END, REPORT) within 1 s
SIGV4_SERVICE = "lambda"  # the service name SDKs sign Invoke calls for


class InvocationType(Enum):
    REQUEST_RESPONSE = "RequestResponse"
    EVENT = "Event"
    DRY_RUN = "DryRun"


class Backend(Protocol):
    """What the Invoke API needs of the gateway (its current table, pool and queue)."""

    settings: Settings

    @property
    def table(self) -> RoutingTable: ...

    @property
    def pool(self) -> Pool: ...

    async def enqueue(self, function: str, payload: bytes, *, trace_id: str | None) -> str:
        """Store an Event invocation durably; return once it is committed."""
        ...


# -- pure parts ---------------------------------------------------------------------------


def function_name(raw: str, qualifier: str | None, *, region: str) -> str:
    """The function name in a name, ``name:qualifier``, a partial ARN
    (``123456789012:function:name``) or a full ARN; only ``$LATEST`` is published."""
    parts = raw.split(":")
    if raw.startswith("arn:"):
        parts = parts[6:] if len(parts) in (7, 8) and parts[5] == "function" else []
    elif len(parts) in (3, 4) and parts[1] == "function":
        parts = parts[2:]
    if not parts or not parts[0] or len(parts) > 2:
        raise InvalidParameterValue(f"1 validation error detected: FunctionName {raw!r} is invalid")
    name, path_qualifier = parts[0], (parts[1] if len(parts) == 2 else None)
    if qualifier and path_qualifier and qualifier != path_qualifier:
        raise InvalidParameterValue("The derived qualifier from the function name does not match")
    wanted = qualifier or path_qualifier
    if wanted not in (None, LATEST):
        arn = f"{function_arn(name, region)}:{wanted}"
        raise ResourceNotFound(f"Function not found: {arn}")
    return name


def invocation_type(header: str | None) -> InvocationType:
    try:
        return InvocationType(header or InvocationType.REQUEST_RESPONSE.value)
    except ValueError:
        raise InvalidParameterValue(f"Unsupported invocation type: {header!r}") from None


def client_context(header: str | None) -> str | None:
    """``X-Amz-Client-Context`` decoded, as the runtime receives it: it must be a JSON object
    in base64 (what AWS's Invoke accepts), so nothing else reaches a runtime's header."""
    if not header:
        return None
    if len(header) > MAX_CLIENT_CONTEXT_BYTES:
        raise InvalidRequestContent("Client context must be 3583 bytes or less")
    try:
        text = base64.b64decode(header, validate=True).decode()
        document = json.loads(text)
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
        document = None
    if not isinstance(document, dict):
        raise InvalidRequestContent("Client context must be a valid Base64-encoded JSON object.")
    # JSON allows line breaks between its tokens; a header value does not: re-encode then.
    return text if text.isprintable() else json.dumps(document, separators=(",", ":"))


def checked_payload(body: bytes, kind: InvocationType) -> bytes:
    """The request payload: at most Lambda's size limit, JSON (an empty body means ``{}``)."""
    limit = MAX_ASYNC_PAYLOAD_BYTES if kind is InvocationType.EVENT else MAX_SYNC_PAYLOAD_BYTES
    if len(body) > limit:
        raise RequestTooLarge(f"Request must be smaller than {limit} bytes for the operation")
    if not body.strip():
        return b"{}"
    try:
        json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidRequestContent("Could not parse request body into json") from None
    return body


def is_authorised(request: SignedRequest, *, settings: Settings, now_s: float) -> bool:
    """The API key, a valid JWT, or a SigV4 signature: in production mode only a signature
    that verifies against the box's keys; in development mode any, so a stock SDK client
    with dummy credentials works. Never open in production mode."""
    api_key = request.headers.get("x-api-key")
    if api_key is not None and auth.is_api_key_valid(api_key, settings.api_key):
        return True
    authorization = request.headers.get("authorization", "")
    if authorization.startswith(sigv4.ALGORITHM):
        return not settings.is_production or sigv4.verifies(
            request,
            access_key_id=settings.aws_access_key_id,
            secret_access_key=settings.aws_secret_access_key,
            service=SIGV4_SERVICE,
            now_s=now_s,
        )
    if not authorization:
        return False
    try:
        auth.claims_for(authorization, secret=settings.jwt_secret, now_s=now_s)
    except Unauthorized:
        return False
    return True


def may_invoke(caller: FunctionSpec, target: str, *, settings: Settings) -> bool:
    """Whether a sandbox of ``caller`` may invoke ``target`` (functions call functions
    through ``AWS_ENDPOINT_URL_LAMBDA``): its ``can_invoke`` list when set; otherwise any
    function in development mode and none in production mode. Its credentials do not
    matter: every sandbox holds the box's keys."""
    if caller.can_invoke is not None:
        return target in caller.can_invoke
    return not settings.is_production


def result_headers(result: InvocationResult, log_tail: bytes | None) -> dict[str, str]:
    headers = {"X-Amz-Executed-Version": LATEST}
    if result.is_error:
        headers["X-Amz-Function-Error"] = "Unhandled"
    if log_tail is not None:
        headers["X-Amz-Log-Result"] = base64.b64encode(log_tail).decode()
    return headers


# -- the HTTP shell -------------------------------------------------------------------------


class InvokeApi:
    """``POST /2015-03-31/functions/{name}/invocations`` on the gateway's HTTP port."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def handle(self, request: web.Request, *, request_id: str, trace_id: str) -> web.Response:
        """Answer one Invoke call; a synchronous one runs as ``request_id``, the id its
        response's ``x-amzn-RequestId`` header carries, as on AWS."""
        settings = self._backend.settings
        body = await read_body(request, _request_too_large)  # a signature covers it
        caller = self._backend.pool.function_at(request.remote or "")
        if caller is None:
            self._authorise(request, body, settings)
        name = function_name(
            request.match_info["function"], request.query.get("Qualifier"), region=settings.region
        )
        if caller is not None and not may_invoke(caller, name, settings=settings):
            raise AccessDenied(f"function {caller.name!r} may not invoke {name!r} (can_invoke)")
        if name not in self._backend.table.functions:
            raise ResourceNotFound(f"Function not found: {function_arn(name, settings.region)}")
        kind = invocation_type(request.headers.get("X-Amz-Invocation-Type"))
        payload = checked_payload(body, kind)
        if kind is InvocationType.DRY_RUN:
            return web.Response(status=204, headers={"X-Amz-Executed-Version": LATEST})
        if kind is InvocationType.EVENT:
            await _enqueue(self._backend, name, payload, trace_id)
            return web.Response(status=202, headers={"X-Amz-Executed-Version": LATEST})
        invocation = Invocation(
            payload=payload,
            request_id=request_id,
            trace_id=trace_id,
            client_context=client_context(request.headers.get("X-Amz-Client-Context")),
        )
        return await self._run(name, invocation, wants_tail=_wants_tail(request))

    def _authorise(self, request: web.Request, body: bytes, settings: Settings) -> None:
        if not is_authorised(signed_request(request, body), settings=settings, now_s=time.time()):
            raise AccessDenied(
                "Missing or invalid credentials (x-api-key, a JWT, or a SigV4 signature with"
                " the box's keys)"
            )

    async def _run(self, name: str, invocation: Invocation, *, wants_tail: bool) -> web.Response:
        try:
            result = await self._backend.pool.invoke(name, invocation)
        except TooManyRequests as exc:
            raise TooManyRequestsService("Rate Exceeded.") from exc
        except EngineUnavailable as exc:
            # The engine's own words (socket paths, network errors) stay in the log.
            log.warning("invoke failed", function=name, error=str(exc))
            raise ServiceError("The function could not be run: the box is unavailable") from exc
        if result.stream is not None:  # Invoke buffers what a streaming function sends
            collected = await _collect(result.stream)
            result = InvocationResult(collected) if collected is not None else too_large_result()
        payload = result.payload
        log_tail = None
        if wants_tail:
            await self._backend.pool.journal.settled(invocation, LOG_SETTLE_S)
            log_tail = tail(invocation.log.lines)
        return web.Response(
            status=200,
            body=payload,
            content_type="application/json",
            headers=result_headers(result, log_tail),
        )


def signed_request(request: web.Request, body: bytes) -> SignedRequest:
    """What a SigV4 signature of ``request`` covers, as it arrived."""
    return SignedRequest(
        method=request.method,
        raw_path=request.raw_path.partition("?")[0],
        raw_query=request.rel_url.raw_query_string,
        headers=request.headers,
        body=body,
    )


def _wants_tail(request: web.Request) -> bool:
    return request.headers.get("X-Amz-Log-Type", "None") == "Tail"


async def read_body(request: web.Request, too_large: Callable[[str], EdgeLambdaError]) -> bytes:
    """The request body, refused with ``too_large`` beyond the 6 MB payload limit that API
    Gateway and Lambda share."""
    limit = MAX_SYNC_PAYLOAD_BYTES
    if (request.content_length or 0) > limit:
        raise too_large(f"body of {request.content_length} bytes; the limit is {limit}")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(f"body over the limit of {limit} bytes") from None


def _request_too_large(detail: str) -> RequestTooLarge:
    return RequestTooLarge(
        f"Request must be smaller than {MAX_SYNC_PAYLOAD_BYTES} bytes for the operation ({detail})"
    )


async def _collect(stream: ResponseStream) -> bytes | None:
    """The whole streamed body; None once it grows past Lambda's response limit (the rest
    is dropped as it comes, so the runtime is not blocked)."""
    chunks, size = [], 0
    try:
        async for chunk in stream.chunks():
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                stream.abandon()
                return None
            chunks.append(chunk)
    except StreamBroken as exc:
        log.warning("streamed result broken off", error=str(exc))
        raise ServiceError("The function's response stream broke off") from exc
    return b"".join(chunks)


async def _enqueue(backend: Backend, name: str, payload: bytes, trace_id: str) -> None:
    """Store an Event invocation (the 202 follows only a committed row), or answer as AWS
    does when it cannot be stored."""
    try:
        await backend.enqueue(name, payload, trace_id=trace_id)
    except EventQueueFull as exc:
        raise TooManyRequestsService(f"Too many queued Event invocations: {exc}") from exc
    except EventStoreError as exc:  # a full disk, an I/O error: no 202 without the row
        raise ServiceError("The Event invocation could not be stored") from exc
