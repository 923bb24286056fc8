"""One call of a function: its payload and where its answer goes, what the runtime answered
(a payload, an error document, or a stream of chunks), and Lambda's own error results."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from edgelambda import ids
from edgelambda.errors import StreamBroken
from edgelambda.logs import InvocationLog

TIMEOUT_ERROR_TYPE = "Sandbox.Timedout"
EXIT_ERROR_TYPE = "Runtime.ExitError"
OOM_ERROR_TYPE = "Runtime.OutOfMemory"
INIT_TIMEOUT_ERROR_TYPE = "Runtime.InitTimeout"
TOO_LARGE_ERROR_TYPE = "Function.ResponseSizeTooLarge"
# Lambda's limit on a synchronous response, in bytes: 6 MB as its error message counts it,
# "Response payload size exceeded maximum allowed payload size (6291556 bytes)." (quoted in
# zaccharles.medium.com, "Deep Dive: Lambda's Response Payload Size Limit"; the whole limit
# is usable).
MAX_RESPONSE_BYTES = 6_291_556


class ResponseStream:
    """The chunks of a streamed response, from the runtime's POST to the caller.

    Bounded, so a slow client slows the function down instead of filling the gateway's
    memory; once the caller is gone, chunks are dropped so the runtime is never blocked."""

    def __init__(self, content_type: str, max_chunks: int = 16) -> None:
        self.content_type = content_type
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue(max_chunks)
        self._error: str | None = None
        self._is_abandoned = False

    async def put(self, chunk: bytes) -> None:
        if not self._is_abandoned:
            await self._chunks.put(chunk)

    async def end(self, error: str | None = None) -> None:
        """The runtime finished (``error`` says why it broke off, if it did)."""
        self._error = error
        if not self._is_abandoned:
            await self._chunks.put(None)

    def abandon(self) -> None:
        """The caller went away: drop what is queued and whatever still comes."""
        self._is_abandoned = True
        while not self._chunks.empty():
            self._chunks.get_nowait()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The chunks in order; raises StreamBroken if the runtime broke off."""
        while (chunk := await self._chunks.get()) is not None:
            yield chunk
        if self._error is not None:
            raise StreamBroken(self._error)


@dataclass(frozen=True, slots=True)
class InvocationResult:
    """What the runtime posted: the response payload, or an error document and its type;
    for a streamed response, the stream its chunks arrive on."""

    payload: bytes
    error_type: str | None = None
    stream: ResponseStream | None = None

    @property
    def is_error(self) -> bool:
        return self.error_type is not None


def error_result(error_type: str, message: str) -> InvocationResult:
    document = {"errorType": error_type, "errorMessage": message}
    return InvocationResult(json.dumps(document).encode(), error_type)


def timeout_result(timeout_s: float) -> InvocationResult:
    """Lambda's error for an invocation that ran past its timeout."""
    return error_result(TIMEOUT_ERROR_TYPE, f"Task timed out after {timeout_s:.2f} seconds")


def too_large_result() -> InvocationResult:
    """Lambda's error for a response over :data:`MAX_RESPONSE_BYTES`."""
    message = (
        f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
    )
    return error_result(TOO_LARGE_ERROR_TYPE, message)


def exit_result(exit_code: int, is_oom: bool) -> InvocationResult:
    """Lambda's error for a runtime process that died during an invocation."""
    if is_oom:
        return error_result(OOM_ERROR_TYPE, "Runtime exited with error: signal: killed")
    return error_result(EXIT_ERROR_TYPE, f"Runtime exited with error: exit status {exit_code}")


@dataclass(eq=False, slots=True)
class Invocation:
    """One call of a function, from queueing until the runtime answers it."""

    payload: bytes
    trace_id: str | None = None
    client_context: str | None = None
    request_id: str = field(default_factory=ids.uuid4)
    deadline_ms: int = 0  # epoch ms, set when a sandbox takes it
    result: asyncio.Future[InvocationResult] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    expiry: asyncio.TimerHandle | None = None  # the queue-wait limit while it waits
    log: InvocationLog = field(init=False)  # the function log's record of it

    def __post_init__(self) -> None:
        self.log = InvocationLog(self.request_id, self.trace_id)

    def stop_waiting(self) -> None:
        """It left the queue: its queue-wait limit no longer applies."""
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None

    def settle(self, outcome: InvocationResult | BaseException) -> None:
        """Complete the invocation once; later outcomes are ignored (never answered twice)."""
        self.stop_waiting()
        if self.result.done():
            return
        if isinstance(outcome, BaseException):
            self.result.set_exception(outcome)
        else:
            self.result.set_result(outcome)
