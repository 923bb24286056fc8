"""The container pool: where invocations meet sandboxes.

An invocation waits in its function's FIFO queue until a sandbox polls the Runtime API for
work; whichever sandbox asks first gets the oldest invocation, so no request waits on "its
own" cold start while another container is free. When work waits and no sandbox is free,
stopped sandboxes are restarted (warm start) and new ones created (cold start), up to the
function's ``max_concurrency``: :mod:`edgelambda.lifecycle` starts, stops and retires them,
and :mod:`edgelambda.sandbox_engine` runs their containers. The pool starts and stops the
two loops they need: the idle reaper and the watcher of the engine's container exits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

import structlog

from edgelambda.config import Settings
from edgelambda.containers import ContainerBackend, runtime_token
from edgelambda.errors import (
    EngineUnavailable,
    InvalidRequestId,
    RouteNotFound,
    SandboxRetired,
    TooManyRequests,
)
from edgelambda.invocation import Invocation, InvocationResult, ResponseStream, timeout_result
from edgelambda.journal import Journal
from edgelambda.lifecycle import Lifecycle
from edgelambda.logs import LogSink, StdoutSink
from edgelambda.metrics import Metrics
from edgelambda.routing import FunctionSpec
from edgelambda.sandbox import (
    FunctionPool,
    PayloadTally,
    Sandbox,
    SandboxState,
    check_payload_budget,
    containers_by_state,
    pools_snapshot,
    sandboxes_to_start,
    warmest,
)
from edgelambda.sandbox_engine import SandboxEngine
from edgelambda.tasks import LoopRegistry, TaskSet, start_loop

log = structlog.get_logger(__name__)

ANSWER_SLACK_S = 5.0  # beyond every bound on an invocation, before its caller is answered anyway


def answer_bound_s(settings: Settings, function: FunctionSpec) -> float:
    """The longest a caller can wait: queued, then a start, then the function's timeout."""
    return settings.queue_wait_s + settings.init_timeout_s + function.timeout_s + ANSWER_SLACK_S


class Pool:
    """Every function's queue and sandboxes: invocations in, the Runtime API's polls and
    answers, and the lifecycle of the sandboxes behind them."""

    def __init__(
        self,
        *,
        functions: Mapping[str, FunctionSpec],
        backend: ContainerBackend,
        settings: Settings,
        runtime_api: str,
        aws_env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sink: LogSink | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._engine = SandboxEngine(
            backend=backend, settings=settings, runtime_api=runtime_api, aws_env=aws_env or {}
        )
        self._settings = settings
        self._clock = clock
        self._payloads = PayloadTally()  # shared by every function's pool
        self._pools = {
            name: FunctionPool(spec, settings.queue_size, payloads=self._payloads)
            for name, spec in functions.items()
        }
        self._tasks = TaskSet()
        self._loops: list[asyncio.Task[None]] = []
        self._is_closing = False
        self.journal = Journal(
            backend=backend, sink=sink or StdoutSink(), tasks=self._tasks, metrics=metrics
        )
        self._lifecycle = Lifecycle(
            pools=self._pools,
            engine=self._engine,
            journal=self.journal,
            settings=settings,
            clock=clock,
            tasks=self._tasks,
            on_change=self._dispatch,
            payloads=self._payloads,
        )

    # -- the caller's side --------------------------------------------------------------

    async def invoke(self, function_name: str, invocation: Invocation) -> InvocationResult:
        """Run ``invocation`` on a sandbox of ``function_name`` and return what it answered.

        Raises :class:`TooManyRequests` when the function's queue is full or the invocation
        waited longer than the queue-wait limit for a sandbox."""
        pool = self._pool(function_name)
        if self._is_closing:
            raise EngineUnavailable("the gateway is shutting down")
        budget_bytes = self._settings.queued_payload_mb * 1024 * 1024
        check_payload_budget(self._payloads, len(invocation.payload), budget_bytes)
        pool.enqueue(invocation)
        self._dispatch(pool)
        if pool.queue and pool.queue[-1] is invocation:  # no sandbox was free: it waits
            self._arm_queue_wait(pool, invocation)
        # Every path answers before this bound (queue wait, init timeout, deadline): reaching
        # it is a bug, but the caller (or an Event worker slot) must not wait forever on it.
        # A timer, not asyncio.timeout: this runs on every invocation.
        net = asyncio.get_running_loop().call_later(
            answer_bound_s(self._settings, pool.function), self._never_answered, pool, invocation
        )
        try:
            return await asyncio.shield(invocation.result)
        finally:
            net.cancel()
            # The caller went away (client disconnect): a still-queued invocation is dropped.
            if not invocation.result.done() and pool.withdraw(invocation):
                invocation.settle(EngineUnavailable("caller gone"))

    def _never_answered(self, pool: FunctionPool, invocation: Invocation) -> None:
        log.error("invocation never answered", aws_request_id=invocation.request_id)
        pool.withdraw(invocation)  # if it is still queued, it never runs
        invocation.settle(timeout_result(pool.function.timeout_s))

    def _pool(self, function_name: str) -> FunctionPool:
        pool = self._pools.get(function_name)
        if pool is None or pool.is_removed:
            raise RouteNotFound(f"function {function_name!r} is not defined")
        return pool

    def _arm_queue_wait(self, pool: FunctionPool, invocation: Invocation) -> None:
        """Answer 429 if ``invocation`` is still queued after the queue-wait limit."""
        invocation.expiry = asyncio.get_running_loop().call_later(
            self._settings.queue_wait_s, self._expire, pool, invocation
        )

    def _expire(self, pool: FunctionPool, invocation: Invocation) -> None:
        invocation.expiry = None
        if pool.withdraw(invocation):
            wait_s = self._settings.queue_wait_s
            invocation.settle(
                TooManyRequests(f"{pool.function.name}: no sandbox within {wait_s:g} s")
            )

    def _dispatch(self, pool: FunctionPool) -> None:
        """Hand waiting invocations to free sandboxes; if work still waits, thaw frozen
        sandboxes for it, then start more."""
        for sandbox, invocation in pool.take_pairs():
            self._assign(sandbox, invocation)
        if not pool.queue or self._is_closing or pool.is_removed or pool.is_saturated():
            return
        census = pool.census()
        thawing = warmest(census.frozen, len(pool.queue) - census.coming)
        for sandbox in thawing:
            self._lifecycle.thaw(pool, sandbox)  # a frozen sandbox is ready in ms
        count = sandboxes_to_start(
            queued=len(pool.queue),
            coming=census.coming + len(thawing),  # a thawing sandbox is coming
            running=census.running,
            max_concurrency=pool.function.max_concurrency,
        )
        for _ in range(count):
            self._lifecycle.start_sandbox(pool)

    def _assign(self, sandbox: Sandbox, invocation: Invocation) -> None:
        invocation.stop_waiting()
        timeout_s = sandbox.function.timeout_s
        invocation.deadline_ms = int((time.time() + timeout_s) * 1000)
        sandbox.assign(invocation)
        sandbox.disarm()
        sandbox.timer = asyncio.get_running_loop().call_later(
            timeout_s, self._on_deadline, sandbox, invocation
        )
        self.journal.begin(sandbox, invocation)

    def _on_deadline(self, sandbox: Sandbox, invocation: Invocation) -> None:
        sandbox.timer = None
        if sandbox.current is not invocation:
            return  # a stale timer: a deadline settles only its own invocation
        log.warning(
            "invocation timed out",
            function=sandbox.function.name,
            aws_request_id=invocation.request_id,
            timeout_s=sandbox.function.timeout_s,
        )
        self._lifecycle.retire(
            sandbox, reason="timeout", result=timeout_result(sandbox.function.timeout_s)
        )

    # -- the Runtime API's side ---------------------------------------------------------

    def snapshot(self) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
        """Containers by (function, state) and waiting invocations by function, for metrics."""
        return pools_snapshot(self._pools)

    def by_state(self) -> dict[str, int]:
        """Containers of every function by state, for ``/health``."""
        return containers_by_state(self._pools.values())

    def images(self) -> Mapping[str, str]:
        """The image each function's last container was started from (none before one)."""
        return self._engine.images

    def remove_idle(self, function_name: str) -> int:
        """Retire the function's idle containers (ready or frozen) beyond its ``min_warm``;
        how many."""
        self._pool(function_name)  # an unknown function is 404
        return self._lifecycle.remove_idle(function_name)

    def function_at(self, address: str) -> FunctionSpec | None:
        """The function whose running sandbox has ``address`` (a function calling back into
        the stack), if any."""
        sandbox = self._engine.at(address)
        return None if sandbox is None else sandbox.function

    async def sandbox_at(self, address: str, wait_s: float = 2.0) -> Sandbox | None:
        """The running sandbox whose container has ``address``. A runtime can poll before
        its start has been recorded, so wait briefly while any sandbox is starting."""
        sandbox = self._engine.at(address)
        if sandbox is not None:
            return sandbox
        if not any(p.count(SandboxState.STARTING) for p in self._pools.values()):
            return None
        return await self._engine.wait_for(address, wait_s)

    def caller(self, address: str, host: str) -> Sandbox | None:
        """The registered sandbox a Runtime API request comes from (see
        :meth:`sandbox_calling`), without waiting for one being started."""
        token = runtime_token(host)
        return None if token is None else self._engine.caller(address, token)

    async def sandbox_calling(self, address: str, host: str, wait_s: float = 2.0) -> Sandbox | None:
        """The sandbox a Runtime API request comes from: it calls by its own host name (which
        carries its secret token) from its own address; None for anyone else."""
        token = runtime_token(host)
        return None if token is None else await self._engine.identify(address, token, wait_s)

    def poll(self, sandbox: Sandbox) -> asyncio.Future[Invocation]:
        """``sandbox``'s runtime polls ``next``: the future of the invocation it will be
        handed. A runtime that goes away before it has it must be reported to
        :meth:`abandon_poll`."""
        if not sandbox.state.is_running:
            raise SandboxRetired(sandbox.instance)
        if sandbox.poll is not None:
            raise InvalidRequestId("this sandbox is already waiting for an invocation")
        if sandbox.state is SandboxState.BUSY and not sandbox.is_finishing:
            raise InvalidRequestId("this sandbox has not answered its invocation")
        pool = self._pools[sandbox.function.name]
        if pool.is_outdated(sandbox):  # its code or settings changed meanwhile
            self._lifecycle.retire(sandbox, reason="outdated")
            raise SandboxRetired("outdated")
        if sandbox.state is SandboxState.STARTING:
            self._lifecycle.runtime_ready(sandbox)
        poll: asyncio.Future[Invocation] = asyncio.get_running_loop().create_future()
        sandbox.await_work(poll, self._clock())
        pool.park(sandbox)
        self._dispatch(pool)
        return poll

    async def next_invocation(self, sandbox: Sandbox) -> Invocation:
        """Wait until ``sandbox`` is handed an invocation (:meth:`poll`, awaited)."""
        poll = self.poll(sandbox)
        try:
            return await poll
        except asyncio.CancelledError:
            self.abandon_poll(sandbox, poll)
            raise

    def abandon_poll(self, sandbox: Sandbox, poll: asyncio.Future[Invocation]) -> None:
        """The runtime's poll ended before it received anything (it disconnected): what it
        was handed goes to another sandbox, and this one is retired."""
        poll.cancel()
        sandbox.forget_poll(poll)
        if poll.done() and not poll.cancelled() and poll.exception() is None:
            self.undeliverable(sandbox, poll.result())
        elif sandbox.state.is_running:
            self._lifecycle.retire(sandbox, reason="runtime disconnected")

    def undeliverable(self, sandbox: Sandbox, invocation: Invocation) -> None:
        """``invocation`` was handed to ``sandbox`` but never reached its runtime: put it back
        first in line for another sandbox, and retire this one."""
        if sandbox.take_back(invocation):
            pool = self._pools[sandbox.function.name]
            pool.requeue_first(invocation)
            self._arm_queue_wait(pool, invocation)
        self._lifecycle.retire(sandbox, reason="runtime disconnected")

    def respond(self, sandbox: Sandbox, request_id: str, payload: bytes) -> None:
        """The runtime posted the response of ``request_id``."""
        self._finish(sandbox, request_id, InvocationResult(payload))

    def respond_stream(self, sandbox: Sandbox, request_id: str, stream: ResponseStream) -> None:
        """The runtime started a streamed response; the deadline keeps running until
        :meth:`stream_ended`, as Lambda's timeout covers the whole stream."""
        invocation = sandbox.holding(request_id)
        sandbox.start_stream(invocation, InvocationResult(b"", stream=stream))

    def stream_ended(self, sandbox: Sandbox) -> None:
        sandbox.end_stream(self._clock())
        if sandbox.current is not None:
            self.journal.conclude(sandbox, sandbox.current)

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

    def init_failed(self, sandbox: Sandbox, payload: bytes, error_type: str) -> None:
        """The runtime reported ``/init/error``: its handler cannot be loaded."""
        log.error(
            "init error",
            function=sandbox.function.name,
            container=(sandbox.container_id or "")[:12],
            error_type=error_type,
            error=payload.decode("utf-8", "replace"),
        )
        self._lifecycle.fail_start(sandbox, InvocationResult(payload, error_type))

    def _finish(self, sandbox: Sandbox, request_id: str, result: InvocationResult) -> None:
        invocation = sandbox.holding(request_id)
        sandbox.answer(invocation, result, self._clock())
        self.journal.conclude(sandbox, invocation)

    # -- configuration changes and idle sandboxes -----------------------------------------

    def update_functions(self, functions: Mapping[str, FunctionSpec]) -> None:
        """Apply a reloaded routing table (see :meth:`Lifecycle.update_functions`)."""
        self._lifecycle.update_functions(functions)

    def recycle(self, function_name: str, *, reason: str) -> None:
        """Make new work run the function's current code (see :meth:`Lifecycle.recycle`)."""
        self._lifecycle.recycle(function_name, reason=reason)

    def reap(self, now_s: float) -> None:
        """Stop idle sandboxes, remove long-stopped ones, keep ``min_warm`` running."""
        self._lifecycle.reap(now_s)

    # -- start and shutdown -------------------------------------------------------------

    async def start(self, loops: LoopRegistry | None = None) -> None:
        """Remove what a previous run of this stack left, start ``min_warm`` sandboxes, and
        start the reaper and the exit watcher."""
        removed = await self._engine.remove_stack()
        if removed:
            log.info("removed leftover containers", count=removed, stack=self._settings.stack)
        self._loops = [
            start_loop(self._lifecycle.reap_forever(), "idle reaper", loops),
            start_loop(
                self._engine.watch_exits(self._lifecycle.container_exited), "exit watcher", loops
            ),
        ]
        self.reap(self._clock())

    async def close(self) -> None:
        """Drain in-flight invocations to the grace deadline, then remove every container."""
        self._is_closing = True
        for loop_task in self._loops:
            loop_task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        in_flight = [
            s.current.result for p in self._pools.values() for s in p.sandboxes if s.current
        ]
        if in_flight:
            log.info("draining", in_flight=len(in_flight))
            await asyncio.wait(in_flight, timeout=self._settings.shutdown_grace_s)
        shutting_down = EngineUnavailable("the gateway is shutting down")
        for pool in self._pools.values():
            pool.fail_waiting(shutting_down)
            for sandbox in list(pool.sandboxes):
                self._lifecycle.retire(sandbox, reason="shutdown")
        while self._tasks:
            await asyncio.gather(*self._tasks.running(), return_exceptions=True)
        await self.journal.drain()
        await self._engine.remove_stack()
