"""The container pool: sandboxes per function, each running one invocation at a time.

An invocation waits in its function's FIFO queue until a sandbox polls the Runtime API for
work; whichever sandbox asks first gets the oldest invocation. When work waits and no
sandbox is free, new sandboxes are cold-started up to the function's ``max_concurrency``.
The decisions are small pure functions; :class:`Pool` is the async shell around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections import deque
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import structlog

from edgelambda.config import Settings
from edgelambda.containers import ContainerBackend, container_spec
from edgelambda.errors import (
    EdgeLambdaError,
    EngineUnavailable,
    RouteNotFound,
    TooManyRequests,
)
from edgelambda.routing import FunctionSpec

log = structlog.get_logger(__name__)

TIMEOUT_ERROR_TYPE = "Sandbox.Timedout"
EXIT_ERROR_TYPE = "Runtime.ExitError"


class SandboxState(Enum):
    STARTING = "starting"  # container created, runtime not polling yet
    READY = "ready"  # runtime polling /next, no invocation
    BUSY = "busy"  # running one invocation
    DEAD = "dead"  # retired; its container is being removed


class InvalidRequestId(EdgeLambdaError):
    """A runtime answered an invocation that is not the one it holds."""

    status = 400
    public_message = "Invalid request id"


class SandboxRetired(EdgeLambdaError):
    """The sandbox was retired while its runtime waited for work."""

    status = 410
    public_message = "Sandbox retired"


@dataclass(frozen=True)
class InvocationResult:
    """What the runtime posted: the response payload, or an error with its type."""

    payload: bytes
    error_type: str | None = None

    @property
    def is_error(self) -> bool:
        return self.error_type is not None


@dataclass(eq=False)
class Invocation:
    """One call of a function, from queueing until the runtime answers."""

    payload: bytes
    trace_id: str | None = None
    client_context: str | None = None
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    deadline_ms: int = 0  # epoch ms, set when a sandbox takes it
    result: asyncio.Future[InvocationResult] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def settle(self, outcome: InvocationResult | BaseException) -> None:
        """Complete the invocation once; later outcomes are ignored (never answered twice)."""
        if self.result.done():
            return
        if isinstance(outcome, BaseException):
            self.result.set_exception(outcome)
        else:
            self.result.set_result(outcome)


class Sandbox:
    """One function container and the state of its runtime."""

    def __init__(self, function: FunctionSpec) -> None:
        self.function = function
        self.instance = uuid.uuid4().hex
        self.state = SandboxState.STARTING
        self.container_id: str | None = None
        self.address: str | None = None
        self.current: Invocation | None = None
        self.created_at = time.monotonic()
        self.poll: asyncio.Future[Invocation] | None = None
        self.timer: asyncio.TimerHandle | None = None  # init or invocation deadline

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def __repr__(self) -> str:
        return f"<Sandbox {self.function.name} {self.instance[:8]} {self.state.value}>"


def sandboxes_to_start(*, queued: int, starting: int, total: int, max_concurrency: int) -> int:
    """How many cold starts the queue needs: one per waiting invocation not already covered
    by a starting sandbox, within the function's concurrency limit."""
    return max(0, min(queued - starting, max_concurrency - total))


@dataclass(eq=False)
class FunctionPool:
    """The sandboxes and the waiting invocations of one function."""

    function: FunctionSpec
    queue_size: int
    queue: deque[Invocation] = field(default_factory=deque)
    idle: deque[Sandbox] = field(default_factory=deque)
    sandboxes: set[Sandbox] = field(default_factory=set)

    @property
    def starting(self) -> int:
        return sum(1 for s in self.sandboxes if s.state is SandboxState.STARTING)

    def enqueue(self, invocation: Invocation) -> None:
        if len(self.queue) >= self.queue_size:
            raise TooManyRequests(f"{self.function.name}: queue of {self.queue_size} is full")
        self.queue.append(invocation)


class Pool:
    """All function pools, the Runtime API's view of sandboxes, and their lifecycle."""

    def __init__(
        self,
        *,
        functions: Mapping[str, FunctionSpec],
        backend: ContainerBackend,
        settings: Settings,
        runtime_api: str,
    ) -> None:
        self._backend = backend
        self._settings = settings
        self._runtime_api = runtime_api
        self._pools = {
            name: FunctionPool(spec, settings.queue_size) for name, spec in functions.items()
        }
        self._by_address: dict[str, Sandbox] = {}
        self._registered = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._is_closing = False

    # -- the caller's side --------------------------------------------------------------

    async def invoke(self, function_name: str, invocation: Invocation) -> InvocationResult:
        """Run ``invocation`` on a sandbox of ``function_name`` and return what it answered."""
        pool = self._pool(function_name)
        if self._is_closing:
            raise EngineUnavailable("the gateway is shutting down")
        pool.enqueue(invocation)
        self._dispatch(pool)
        try:
            return await asyncio.shield(invocation.result)
        finally:
            # The caller went away (client disconnect): a queued invocation is dropped.
            if not invocation.result.done() and invocation in pool.queue:
                pool.queue.remove(invocation)
                invocation.result.cancel()

    def _pool(self, function_name: str) -> FunctionPool:
        try:
            return self._pools[function_name]
        except KeyError:
            raise RouteNotFound(f"function {function_name!r} is not defined") from None

    def _dispatch(self, pool: FunctionPool) -> None:
        """Hand waiting invocations to free sandboxes; cold-start more if work still waits."""
        while pool.queue and pool.idle:
            self._assign(pool.idle.popleft(), pool.queue.popleft())
        if self._is_closing:
            return
        count = sandboxes_to_start(
            queued=len(pool.queue),
            starting=pool.starting,
            total=len(pool.sandboxes),
            max_concurrency=pool.function.max_concurrency,
        )
        for _ in range(count):
            self._spawn(pool)

    def _assign(self, sandbox: Sandbox, invocation: Invocation) -> None:
        timeout_s = sandbox.function.timeout_s
        invocation.deadline_ms = int((time.time() + timeout_s) * 1000)
        sandbox.state = SandboxState.BUSY
        sandbox.current = invocation
        sandbox.timer = asyncio.get_running_loop().call_later(
            timeout_s, self._on_deadline, sandbox, invocation
        )
        assert sandbox.poll is not None, "only polling sandboxes are idle"
        sandbox.poll.set_result(invocation)

    def _on_deadline(self, sandbox: Sandbox, invocation: Invocation) -> None:
        timeout_s = sandbox.function.timeout_s
        log.warning(
            "invocation timed out",
            function=sandbox.function.name,
            aws_request_id=invocation.request_id,
            timeout_s=timeout_s,
        )
        sandbox.timer = None
        invocation.settle(timeout_result(timeout_s))
        self._retire(sandbox, reason="timeout")

    # -- cold starts ----------------------------------------------------------------------

    def _spawn(self, pool: FunctionPool) -> None:
        sandbox = Sandbox(pool.function)
        pool.sandboxes.add(sandbox)
        self._own(self._cold_start(pool, sandbox))

    def _own(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cold_start(self, pool: FunctionPool, sandbox: Sandbox) -> None:
        function = pool.function
        started_at = time.monotonic()
        try:
            image = function.image or await self._backend.function_image(
                function, self._settings.base_image_for(function.runtime)
            )
            spec = container_spec(
                function,
                image=image,
                instance=sandbox.instance,
                stack=self._settings.stack,
                network=self._settings.docker_network,
                runtime_api=self._runtime_api,
                region=self._settings.region,
                host_cpus=os.cpu_count() or 1,
            )
            started = await self._backend.start(spec)
        except EdgeLambdaError as exc:
            log.error("cold start failed", function=function.name, error=str(exc))
            self._abandon_start(pool, sandbox, exc)
            return
        sandbox.container_id, sandbox.address = started.id, started.address
        if sandbox.state is SandboxState.DEAD:  # retired while starting (shutdown)
            await self._remove_container(sandbox)
            return
        log.info(
            "container started",
            function=function.name,
            container=started.id[:12],
            start_ms=round((time.monotonic() - started_at) * 1000, 1),
        )
        sandbox.timer = asyncio.get_running_loop().call_later(
            self._settings.init_timeout_s, self._on_init_timeout, sandbox
        )
        async with self._registered:
            self._by_address[started.address] = sandbox
            self._registered.notify_all()

    def _abandon_start(self, pool: FunctionPool, sandbox: Sandbox, error: EdgeLambdaError) -> None:
        """A sandbox could not start: fail the work that nothing else will serve."""
        pool.sandboxes.discard(sandbox)
        sandbox.state = SandboxState.DEAD
        if pool.queue:
            pool.queue.popleft().settle(error)
        if not pool.sandboxes:
            while pool.queue:
                pool.queue.popleft().settle(error)

    def _on_init_timeout(self, sandbox: Sandbox) -> None:
        sandbox.timer = None
        if sandbox.state is SandboxState.STARTING:
            message = f"runtime did not poll within {self._settings.init_timeout_s:g} s"
            self.init_failed(sandbox, _error_json("Runtime.InitTimeout", message))

    # -- the Runtime API's side -------------------------------------------------------------

    async def sandbox_at(self, address: str, wait_s: float = 2.0) -> Sandbox | None:
        """The sandbox whose container has ``address``. A runtime can poll before its start
        has been recorded, so wait briefly while any sandbox is still starting."""
        sandbox = self._by_address.get(address)
        if sandbox is not None or not any(p.starting for p in self._pools.values()):
            return sandbox
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s), self._registered:
                await self._registered.wait_for(lambda: address in self._by_address)
        return self._by_address.get(address)

    async def next_invocation(self, sandbox: Sandbox) -> Invocation:
        """Wait until ``sandbox`` is handed an invocation (its runtime polls ``/next``)."""
        if sandbox.state is SandboxState.DEAD:
            raise SandboxRetired(sandbox.instance)
        if sandbox.poll is not None:
            raise InvalidRequestId("this sandbox is already waiting for an invocation")
        if sandbox.state is SandboxState.STARTING:
            sandbox.disarm()
            log.info(
                "runtime ready",
                function=sandbox.function.name,
                container=(sandbox.container_id or "")[:12],
                ready_ms=round((time.monotonic() - sandbox.created_at) * 1000, 1),
            )
        pool = self._pools[sandbox.function.name]
        poll: asyncio.Future[Invocation] = asyncio.get_running_loop().create_future()
        sandbox.poll = poll
        sandbox.state, sandbox.current = SandboxState.READY, None
        pool.idle.append(sandbox)
        self._dispatch(pool)
        try:
            return await poll
        except asyncio.CancelledError:
            self._withdraw(sandbox, poll)
            raise
        finally:
            sandbox.poll = None

    def _withdraw(self, sandbox: Sandbox, poll: asyncio.Future[Invocation]) -> None:
        """The runtime's poll ended before it received anything (it disconnected)."""
        if poll.done() and not poll.cancelled():
            self.undeliverable(sandbox, poll.result())
        else:
            self._retire(sandbox, reason="runtime disconnected")

    def undeliverable(self, sandbox: Sandbox, invocation: Invocation) -> None:
        """``invocation`` was handed to ``sandbox`` but never reached its runtime: put it back
        first in line for another sandbox, and retire this one."""
        if sandbox.current is invocation:
            sandbox.disarm()
            sandbox.current = None
            if not invocation.result.done():
                self._pools[sandbox.function.name].queue.appendleft(invocation)
        self._retire(sandbox, reason="runtime disconnected")

    def respond(self, sandbox: Sandbox, request_id: str, payload: bytes) -> None:
        """The runtime posted the response of ``request_id``."""
        self._finish(sandbox, request_id, InvocationResult(payload))

    def fail(self, sandbox: Sandbox, request_id: str, payload: bytes, error_type: str) -> None:
        """The runtime posted an error for ``request_id`` (the handler raised)."""
        log.warning(
            "function error",
            function=sandbox.function.name,
            aws_request_id=request_id,
            error_type=error_type,
            error=payload.decode("utf-8", "replace"),
        )
        self._finish(sandbox, request_id, InvocationResult(payload, error_type))

    def init_failed(self, sandbox: Sandbox, payload: bytes, error_type: str | None = None) -> None:
        """The runtime could not initialise: fail the invocation it would have served."""
        error_type = error_type or "Runtime.Unknown"
        log.error(
            "init error",
            function=sandbox.function.name,
            container=(sandbox.container_id or "")[:12],
            error_type=error_type,
            error=payload.decode("utf-8", "replace"),
        )
        pool = self._pools[sandbox.function.name]
        victim = sandbox.current or (pool.queue.popleft() if pool.queue else None)
        if victim is not None:
            victim.settle(InvocationResult(payload, error_type))
        self._retire(sandbox, reason=error_type)

    def _finish(self, sandbox: Sandbox, request_id: str, result: InvocationResult) -> None:
        invocation = sandbox.current
        if invocation is None or invocation.request_id != request_id:
            raise InvalidRequestId(f"{request_id} is not the invocation this sandbox holds")
        sandbox.disarm()
        invocation.settle(result)

    # -- retiring and shutdown --------------------------------------------------------------

    def _retire(self, sandbox: Sandbox, *, reason: str) -> None:
        """Take a sandbox out of service for good and remove its container."""
        if sandbox.state is SandboxState.DEAD:
            return
        pool = self._pools[sandbox.function.name]
        sandbox.state = SandboxState.DEAD
        sandbox.disarm()
        pool.sandboxes.discard(sandbox)
        if sandbox in pool.idle:
            pool.idle.remove(sandbox)
        if sandbox.address is not None:
            self._by_address.pop(sandbox.address, None)
        if sandbox.current is not None:
            message = f"container stopped ({reason}) during the invocation"
            sandbox.current.settle(
                InvocationResult(_error_json(EXIT_ERROR_TYPE, message), EXIT_ERROR_TYPE)
            )
        if sandbox.poll is not None and not sandbox.poll.done():
            sandbox.poll.set_exception(SandboxRetired(reason))
        log.info(
            "sandbox retired",
            function=sandbox.function.name,
            instance=sandbox.instance[:8],
            reason=reason,
        )
        if sandbox.container_id is not None:
            self._own(self._remove_container(sandbox))
        self._dispatch(pool)

    async def _remove_container(self, sandbox: Sandbox) -> None:
        assert sandbox.container_id is not None
        try:
            await self._backend.remove(sandbox.container_id)
        except EngineUnavailable as exc:
            log.warning(
                "container removal failed", container=sandbox.container_id[:12], error=str(exc)
            )

    async def start(self) -> None:
        """Remove containers a previous run of this stack left behind."""
        removed = await self._backend.remove_stack(self._settings.stack)
        if removed:
            log.info("removed leftover containers", count=removed, stack=self._settings.stack)

    async def close(self) -> None:
        """Drain in-flight invocations to the grace deadline, then remove every container."""
        self._is_closing = True
        in_flight = [
            s.current.result for p in self._pools.values() for s in p.sandboxes if s.current
        ]
        if in_flight:
            log.info("draining", in_flight=len(in_flight))
            await asyncio.wait(in_flight, timeout=self._settings.shutdown_grace_s)
        shutting_down = EngineUnavailable("the gateway is shutting down")
        for pool in self._pools.values():
            while pool.queue:
                pool.queue.popleft().settle(shutting_down)
            for sandbox in list(pool.sandboxes):
                self._retire(sandbox, reason="shutdown")
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._backend.remove_stack(self._settings.stack)


def timeout_result(timeout_s: float) -> InvocationResult:
    """Lambda's error for an invocation that ran past its timeout."""
    message = f"Task timed out after {timeout_s:.2f} seconds"
    return InvocationResult(_error_json(TIMEOUT_ERROR_TYPE, message), TIMEOUT_ERROR_TYPE)


def _error_json(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()
