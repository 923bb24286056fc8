"""Sandboxes and invocations as values, and the pool's decisions as pure functions.

A sandbox is one function container and the state of the runtime inside it:

    starting -> ready <-> busy -> stopped (kept for a warm start) -> removed
                   \\______________________________________________/ dead (crashed,
                                                                   timed out, retired)

Everything here is synchronous and takes time as an argument, so the scheduling rules are
unit-tested without sleeping; :mod:`edgelambda.pool` is the async shell that applies them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from enum import Enum

from edgelambda.errors import TooManyRequests
from edgelambda.routing import FunctionSpec

TIMEOUT_ERROR_TYPE = "Sandbox.Timedout"
EXIT_ERROR_TYPE = "Runtime.ExitError"
OOM_ERROR_TYPE = "Runtime.OutOfMemory"
INIT_TIMEOUT_ERROR_TYPE = "Runtime.InitTimeout"
MAX_LOG_LINES = 256


class SandboxState(Enum):
    STARTING = "starting"  # container (re)started, runtime not polling yet
    READY = "ready"  # runtime polling /next, no invocation
    BUSY = "busy"  # running one invocation
    STOPPED = "stopped"  # container stopped after idling, kept for a warm start
    DEAD = "dead"  # out of service for good; its container is being removed

    @property
    def is_running(self) -> bool:
        return self in {SandboxState.STARTING, SandboxState.READY, SandboxState.BUSY}


class StreamBroken(Exception):
    """A streamed response ended before the runtime finished it."""


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


@dataclass(frozen=True)
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


def exit_result(exit_code: int, is_oom: bool) -> InvocationResult:
    """Lambda's error for a runtime process that died during an invocation."""
    if is_oom:
        return error_result(OOM_ERROR_TYPE, "Runtime exited with error: signal: killed")
    return error_result(EXIT_ERROR_TYPE, f"Runtime exited with error: exit status {exit_code}")


@dataclass(eq=False)
class Invocation:
    """One call of a function, from queueing until the runtime answers it."""

    payload: bytes
    trace_id: str | None = None
    client_context: str | None = None
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    deadline_ms: int = 0  # epoch ms, set when a sandbox takes it
    result: asyncio.Future[InvocationResult] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    expiry: asyncio.TimerHandle | None = None  # the queue-wait limit while it waits
    # Where and when it ran (wall-clock epoch s, to line up with the engine's log stamps).
    sandbox: Sandbox | None = None
    started_s: float = 0.0
    ended_s: float | None = None
    init_ms: float | None = None  # the cold start it paid for, for the REPORT line
    log: list[str] = field(default_factory=list)  # its own lines, START..REPORT
    log_done: asyncio.Event = field(default_factory=asyncio.Event)  # REPORT written

    def add_log(self, line: str) -> None:
        self.log.append(line)
        # Keep what a 4 KB tail can show, plus slack; long-running chatty functions stay bounded.
        if len(self.log) > MAX_LOG_LINES:
            del self.log[: len(self.log) - MAX_LOG_LINES]

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


class Sandbox:
    """One function container and what its runtime is doing. Timestamps are monotonic s."""

    def __init__(self, function: FunctionSpec, *, now_s: float, generation: int = 0) -> None:
        self.function = function
        self.generation = generation  # the function's generation (code/settings) it runs
        self.instance = uuid.uuid4().hex
        self.state = SandboxState.STARTING
        self.container_id: str | None = None
        self.address: str | None = None
        self.current: Invocation | None = None
        self.poll: asyncio.Future[Invocation] | None = None
        self.timer: asyncio.TimerHandle | None = None  # init or invocation deadline
        self.started_s = now_s  # when the latest (re)start began
        self.idle_since_s = now_s  # last time it finished work (or became ready)
        self.stopped_s = now_s  # when it was stopped; meaningful in STOPPED
        self.is_cold = True  # a new container (False after a warm restart)
        self.is_streaming = False  # answered with a stream that is still flowing
        self.recent: deque[Invocation] = deque(maxlen=4)  # for attributing late output
        self.output_seen_s = 0.0  # engine time of the latest output line received
        self.output_arrived = asyncio.Event()  # set at each line, for those waiting on it
        self.pending_init_ms: float | None = None  # cold start to report on the next REPORT
        self.memory_peak_mb: int | None = None  # the container's peak memory, as last asked
        self.memory_checked_s = float("-inf")  # monotonic time of that question

    @property
    def is_finishing(self) -> bool:
        """Answered its invocation, not yet polling again: free in a fraction of a ms. A
        streamed answer settles the invocation when the stream starts; that sandbox stays
        busy until the stream ends."""
        return (
            self.state is SandboxState.BUSY
            and self.current is not None
            and self.current.result.done()
            and not self.is_streaming
        )

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def __repr__(self) -> str:
        return f"<Sandbox {self.function.name} {self.instance[:8]} {self.state.value}>"


def sandboxes_to_start(*, queued: int, coming: int, running: int, max_concurrency: int) -> int:
    """How many sandboxes the queue needs started: one per waiting invocation that no
    sandbox about to become free (starting, or finishing its last invocation) will take,
    within the function's concurrency limit."""
    return max(0, min(queued - coming, max_concurrency - running))


def idle_to_stop(
    sandboxes: Iterable[Sandbox], *, now_s: float, idle_timeout_s: float, min_warm: int
) -> list[Sandbox]:
    """Ready sandboxes idle for longer than ``idle_timeout_s``, keeping ``min_warm``
    running sandboxes (the most recently used ones stay)."""
    running = [s for s in sandboxes if s.state.is_running]
    ready = sorted(
        (s for s in running if s.state is SandboxState.READY), key=lambda s: s.idle_since_s
    )
    spare = max(0, len(running) - min_warm)
    expired = [s for s in ready if now_s - s.idle_since_s >= idle_timeout_s]
    return expired[:spare]


def stopped_to_remove(
    sandboxes: Iterable[Sandbox], *, now_s: float, retention_s: float
) -> list[Sandbox]:
    """Stopped sandboxes kept for longer than the retention period."""
    return [
        s
        for s in sandboxes
        if s.state is SandboxState.STOPPED and now_s - s.stopped_s >= retention_s
    ]


def warm_needed(sandboxes: Iterable[Sandbox], *, min_warm: int) -> int:
    """How many sandboxes to start so that ``min_warm`` are running."""
    return max(0, min_warm - sum(1 for s in sandboxes if s.state.is_running))


@dataclass(eq=False)
class FunctionPool:
    """The sandboxes and the waiting invocations of one function."""

    function: FunctionSpec
    queue_size: int
    queue: deque[Invocation] = field(default_factory=deque)
    idle: deque[Sandbox] = field(default_factory=deque)  # READY, most recently freed last
    sandboxes: set[Sandbox] = field(default_factory=set)  # every state but DEAD
    generation: int = 0  # bumped when the function's code or settings change
    is_removed: bool = False  # gone from routing.yaml; kept until its sandboxes are gone

    def count(self, *states: SandboxState) -> int:
        return sum(1 for s in self.sandboxes if s.state in states)

    @property
    def running(self) -> int:
        return sum(1 for s in self.sandboxes if s.state.is_running)

    @property
    def coming(self) -> int:
        """Sandboxes that will ask for work soon without being handed any now."""
        return sum(1 for s in self.sandboxes if s.state is SandboxState.STARTING or s.is_finishing)

    def stopped(self) -> Sandbox | None:
        """The most recently stopped sandbox, the best candidate for a warm start."""
        stopped = [s for s in self.sandboxes if s.state is SandboxState.STOPPED]
        return max(stopped, key=lambda s: s.stopped_s, default=None)

    def enqueue(self, invocation: Invocation) -> None:
        if len(self.queue) >= self.queue_size:
            raise TooManyRequests(f"{self.function.name}: queue of {self.queue_size} is full")
        self.queue.append(invocation)
