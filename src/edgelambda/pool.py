"""The container pool: the async shell around :mod:`edgelambda.sandbox`'s decisions.

An invocation waits in its function's FIFO queue until a sandbox polls the Runtime API for
work; whichever sandbox asks first gets the oldest invocation, so no request waits on "its
own" cold start while another container is free. When work waits and no sandbox is free,
stopped sandboxes are restarted (warm start) and new ones created (cold start), up to the
function's ``max_concurrency``. One reaper stops idle sandboxes and removes long-stopped
ones; one watcher follows the engine's container exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import structlog

from edgelambda.config import Settings
from edgelambda.containers import (
    ContainerBackend,
    ContainerExit,
    ContainerSpec,
    container_spec,
)
from edgelambda.errors import (
    EdgeLambdaError,
    EngineUnavailable,
    InvalidRequestId,
    RouteNotFound,
    SandboxRetired,
    TooManyRequests,
)
from edgelambda.journal import Journal
from edgelambda.logs import LogSink, StdoutSink
from edgelambda.metrics import Metrics
from edgelambda.routing import FunctionSpec
from edgelambda.sandbox import (
    INIT_TIMEOUT_ERROR_TYPE,
    FunctionPool,
    Invocation,
    InvocationResult,
    ResponseStream,
    Sandbox,
    SandboxState,
    error_result,
    exit_result,
    idle_to_stop,
    sandboxes_to_start,
    stopped_to_remove,
    timeout_result,
    warm_needed,
)
from edgelambda.tasks import TaskSet, backoff_s, start_loop

log = structlog.get_logger(__name__)

WATCH_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)  # reconnect delays after the engine's event stream ends


class Pool:
    """All function pools, the Runtime API's view of sandboxes, and their lifecycle."""

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
        self._backend = backend
        self._settings = settings
        self._runtime_api = runtime_api
        self._aws_env = dict(aws_env or {})
        self._clock = clock
        self._pools = {
            name: FunctionPool(spec, settings.queue_size) for name, spec in functions.items()
        }
        self._by_address: dict[str, Sandbox] = {}
        self._by_container: dict[str, Sandbox] = {}
        self._registered = asyncio.Condition()
        self._tasks = TaskSet()
        self._loops: list[asyncio.Task[None]] = []
        self._is_closing = False
        self.journal = Journal(
            backend=backend, sink=sink or StdoutSink(), own=self._own, metrics=metrics
        )

    # -- the caller's side --------------------------------------------------------------

    async def invoke(self, function_name: str, invocation: Invocation) -> InvocationResult:
        """Run ``invocation`` on a sandbox of ``function_name`` and return what it answered.

        Raises :class:`TooManyRequests` when the function's queue is full or the invocation
        waited longer than the queue-wait limit for a sandbox."""
        pool = self._pool(function_name)
        if self._is_closing:
            raise EngineUnavailable("the gateway is shutting down")
        pool.enqueue(invocation)
        self._arm_queue_wait(pool, invocation)
        self._dispatch(pool)
        try:
            return await asyncio.shield(invocation.result)
        finally:
            # The caller went away (client disconnect): a still-queued invocation is dropped.
            if not invocation.result.done() and invocation in pool.queue:
                pool.queue.remove(invocation)
                invocation.settle(EngineUnavailable("caller gone"))

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
        if invocation in pool.queue:
            pool.queue.remove(invocation)
            wait_s = self._settings.queue_wait_s
            invocation.settle(
                TooManyRequests(f"{pool.function.name}: no sandbox within {wait_s:g} s")
            )

    def _dispatch(self, pool: FunctionPool) -> None:
        """Hand waiting invocations to free sandboxes; start more if work still waits."""
        while pool.queue and pool.idle:
            self._assign(pool.idle.pop(), pool.queue.popleft())
        if self._is_closing or pool.is_removed:
            return
        count = sandboxes_to_start(
            queued=len(pool.queue),
            coming=pool.coming,
            running=pool.running,
            max_concurrency=pool.function.max_concurrency,
        )
        for _ in range(count):
            self._start_sandbox(pool)

    def _assign(self, sandbox: Sandbox, invocation: Invocation) -> None:
        invocation.stop_waiting()
        timeout_s = sandbox.function.timeout_s
        invocation.deadline_ms = int((time.time() + timeout_s) * 1000)
        sandbox.state = SandboxState.BUSY
        sandbox.current = invocation
        sandbox.timer = asyncio.get_running_loop().call_later(
            timeout_s, self._on_deadline, sandbox, invocation
        )
        self.journal.begin(sandbox, invocation)
        assert sandbox.poll is not None, "only polling sandboxes are idle"
        sandbox.poll.set_result(invocation)

    def _on_deadline(self, sandbox: Sandbox, invocation: Invocation) -> None:
        sandbox.timer = None
        log.warning(
            "invocation timed out",
            function=sandbox.function.name,
            aws_request_id=invocation.request_id,
            timeout_s=sandbox.function.timeout_s,
        )
        self._retire(sandbox, reason="timeout", result=timeout_result(sandbox.function.timeout_s))

    # -- starting sandboxes -------------------------------------------------------------

    def _own(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(coro)

    def _start_sandbox(self, pool: FunctionPool) -> None:
        """Warm-start the most recently stopped sandbox, or cold-start a new one."""
        sandbox = pool.stopped()
        if sandbox is None:
            sandbox = Sandbox(pool.function, now_s=self._clock(), generation=pool.generation)
            pool.sandboxes.add(sandbox)
            self._own(self._cold_start(pool, sandbox))
        else:
            sandbox.state, sandbox.is_cold = SandboxState.STARTING, False
            sandbox.started_s = self._clock()
            self._own(self._warm_start(pool, sandbox))

    async def _cold_start(self, pool: FunctionPool, sandbox: Sandbox) -> None:
        function = pool.function
        try:
            image = function.image or await self._backend.function_image(
                function, self._settings.base_image_for(function.runtime)
            )
            started_wall_s = time.time()
            started = await self._backend.start(self._spec(sandbox, image))
        except EdgeLambdaError as exc:
            log.error("cold start failed", function=function.name, error=str(exc))
            self._abandon_start(pool, sandbox, exc)
            return
        sandbox.container_id = started.id
        self._by_container[started.id] = sandbox
        await self._started(sandbox, started.address, kind="cold", started_wall_s=started_wall_s)

    async def _warm_start(self, pool: FunctionPool, sandbox: Sandbox) -> None:
        assert sandbox.container_id is not None
        started_wall_s = time.time()
        try:
            address = await self._backend.restart(sandbox.container_id)
        except EdgeLambdaError as exc:
            # The kept container is unusable; drop it and let the queue cold-start instead.
            log.warning("warm start failed", function=pool.function.name, error=str(exc))
            self._retire(sandbox, reason="warm start failed")
            return
        await self._started(sandbox, address, kind="warm", started_wall_s=started_wall_s)

    def _spec(self, sandbox: Sandbox, image: str) -> ContainerSpec:
        return container_spec(
            sandbox.function,
            image=image,
            instance=sandbox.instance,
            stack=self._settings.stack,
            network=self._settings.docker_network,
            runtime_api=self._runtime_api,
            region=self._settings.region,
            host_cpus=os.cpu_count() or 1,
            aws_env=self._aws_env,
        )

    async def _started(
        self, sandbox: Sandbox, address: str, *, kind: str, started_wall_s: float
    ) -> None:
        """The container runs: register its address and give its runtime time to poll."""
        if sandbox.state is not SandboxState.STARTING:  # retired meanwhile (shutdown, crash)
            if sandbox.state is SandboxState.DEAD:
                await self._remove_container(sandbox)
            return
        log.info(
            "container started",
            function=sandbox.function.name,
            container=(sandbox.container_id or "")[:12],
            start=kind,
            start_ms=round((self._clock() - sandbox.started_s) * 1000, 1),
        )
        sandbox.address = address
        sandbox.timer = asyncio.get_running_loop().call_later(
            self._settings.init_timeout_s, self._on_init_timeout, sandbox
        )
        assert sandbox.container_id is not None
        self._own(self.journal.follow(sandbox, sandbox.container_id, since_s=started_wall_s))
        async with self._registered:
            self._by_address[address] = sandbox
            self._registered.notify_all()

    def _abandon_start(self, pool: FunctionPool, sandbox: Sandbox, error: EdgeLambdaError) -> None:
        """A sandbox could not start: fail the invocation it was for, and every waiting one
        when no other sandbox is left to serve them."""
        pool.sandboxes.discard(sandbox)
        sandbox.state = SandboxState.DEAD
        if pool.queue:
            pool.queue.popleft().settle(error)
        if not any(s.state.is_running for s in pool.sandboxes):
            while pool.queue:
                pool.queue.popleft().settle(error)

    def _on_init_timeout(self, sandbox: Sandbox) -> None:
        sandbox.timer = None
        if sandbox.state is SandboxState.STARTING:
            message = f"runtime did not poll within {self._settings.init_timeout_s:g} s"
            self._fail_start(sandbox, error_result(INIT_TIMEOUT_ERROR_TYPE, message))

    def _fail_start(self, sandbox: Sandbox, result: InvocationResult) -> None:
        """The runtime failed before taking work: fail the invocation it would have served."""
        pool = self._pools[sandbox.function.name]
        victim = sandbox.current or (pool.queue.popleft() if pool.queue else None)
        if victim is not None:
            victim.settle(result)
        self._retire(sandbox, reason=result.error_type or "init failed")

    # -- the Runtime API's side ---------------------------------------------------------

    def snapshot(self) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
        """Containers by (function, state) and waiting invocations by function, for metrics."""
        containers: dict[tuple[str, str], int] = {}
        for name, pool in self._pools.items():
            for sandbox in pool.sandboxes:
                key = (name, sandbox.state.value)
                containers[key] = containers.get(key, 0) + 1
        queued = {name: len(pool.queue) for name, pool in self._pools.items()}
        return containers, queued

    def has_sandbox_at(self, address: str) -> bool:
        """Whether ``address`` is a running sandbox (a function calling back into the stack)."""
        return address in self._by_address

    async def sandbox_at(self, address: str, wait_s: float = 2.0) -> Sandbox | None:
        """The running sandbox whose container has ``address``. A runtime can poll before
        its start has been recorded, so wait briefly while any sandbox is starting."""
        sandbox = self._by_address.get(address)
        if sandbox is not None:
            return sandbox
        if not any(p.count(SandboxState.STARTING) for p in self._pools.values()):
            return None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s), self._registered:
                await self._registered.wait_for(lambda: address in self._by_address)
        return self._by_address.get(address)

    async def next_invocation(self, sandbox: Sandbox) -> Invocation:
        """Wait until ``sandbox`` is handed an invocation (its runtime polls ``/next``)."""
        if not sandbox.state.is_running:
            raise SandboxRetired(sandbox.instance)
        if sandbox.poll is not None:
            raise InvalidRequestId("this sandbox is already waiting for an invocation")
        pool = self._pools[sandbox.function.name]
        if sandbox.generation != pool.generation:  # its code or settings changed meanwhile
            self._retire(sandbox, reason="outdated")
            raise SandboxRetired("outdated")
        if sandbox.state is SandboxState.STARTING:
            self._runtime_ready(sandbox)
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

    def _runtime_ready(self, sandbox: Sandbox) -> None:
        sandbox.disarm()
        now_s = self._clock()
        sandbox.idle_since_s = now_s
        if sandbox.is_cold:
            sandbox.pending_init_ms = (now_s - sandbox.started_s) * 1000
        log.info(
            "runtime ready",
            function=sandbox.function.name,
            container=(sandbox.container_id or "")[:12],
            start="cold" if sandbox.is_cold else "warm",
            ready_ms=round((now_s - sandbox.started_s) * 1000, 1),
        )

    def _withdraw(self, sandbox: Sandbox, poll: asyncio.Future[Invocation]) -> None:
        """The runtime's poll ended before it received anything (it disconnected)."""
        if poll.done() and not poll.cancelled():
            self.undeliverable(sandbox, poll.result())
        elif sandbox.state.is_running:
            self._retire(sandbox, reason="runtime disconnected")

    def undeliverable(self, sandbox: Sandbox, invocation: Invocation) -> None:
        """``invocation`` was handed to ``sandbox`` but never reached its runtime: put it back
        first in line for another sandbox, and retire this one."""
        if sandbox.current is invocation:
            sandbox.disarm()
            sandbox.current = None
            if not invocation.result.done():
                pool = self._pools[sandbox.function.name]
                pool.queue.appendleft(invocation)
                self._arm_queue_wait(pool, invocation)
        self._retire(sandbox, reason="runtime disconnected")

    def respond(self, sandbox: Sandbox, request_id: str, payload: bytes) -> None:
        """The runtime posted the response of ``request_id``."""
        self._finish(sandbox, request_id, InvocationResult(payload))

    def respond_stream(self, sandbox: Sandbox, request_id: str, stream: ResponseStream) -> None:
        """The runtime started a streamed response; the deadline keeps running until
        :meth:`stream_ended`, as Lambda's timeout covers the whole stream."""
        invocation = self._current(sandbox, request_id)
        sandbox.is_streaming = True
        invocation.settle(InvocationResult(b"", stream=stream))

    def stream_ended(self, sandbox: Sandbox) -> None:
        sandbox.is_streaming = False
        sandbox.disarm()
        if sandbox.current is not None:
            self.journal.conclude(sandbox, sandbox.current)
        sandbox.idle_since_s = self._clock()

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
        self._fail_start(sandbox, InvocationResult(payload, error_type))

    def _finish(self, sandbox: Sandbox, request_id: str, result: InvocationResult) -> None:
        invocation = self._current(sandbox, request_id)
        sandbox.disarm()
        sandbox.idle_since_s = self._clock()
        invocation.settle(result)
        self.journal.conclude(sandbox, invocation)

    def _current(self, sandbox: Sandbox, request_id: str) -> Invocation:
        invocation = sandbox.current
        if invocation is None or invocation.request_id != request_id or invocation.result.done():
            raise InvalidRequestId(f"{request_id} is not the invocation this sandbox holds")
        return invocation

    # -- the engine's side --------------------------------------------------------------

    def container_exited(self, exit: ContainerExit) -> None:
        """A container stopped without being asked to (crash, OOM kill, engine restart)."""
        sandbox = self._by_container.get(exit.container_id)
        if sandbox is None or not sandbox.state.is_running:
            return  # ours to stop: reaped, timed out or retired
        log.warning(
            "container exited",
            function=sandbox.function.name,
            container=exit.container_id[:12],
            exit_code=exit.exit_code,
            is_oom=exit.is_oom,
        )
        result = exit_result(exit.exit_code, exit.is_oom)
        if sandbox.state is SandboxState.STARTING:
            self._fail_start(sandbox, result)
            return
        self._retire(sandbox, reason=result.error_type or "exited", result=result)

    async def _watch_exits(self) -> None:
        """Follow container exits; after the engine's stream ends (engine restart), reconnect
        with back-off and reconcile what died while nobody was listening."""
        failures = 0
        while True:
            try:
                await self._reconcile()
                async for exit in self._backend.exits(self._settings.stack):
                    failures = 0
                    self.container_exited(exit)
            except EngineUnavailable as exc:
                log.warning("engine events lost", error=str(exc))
            failures += 1
            await asyncio.sleep(backoff_s(WATCH_BACKOFF_S, failures))

    async def _reconcile(self) -> None:
        running = await self._backend.running_containers(self._settings.stack)
        for container_id, sandbox in list(self._by_container.items()):
            # A sandbox without an address is still being (re)started: not yet expected to run.
            is_expected_running = sandbox.state.is_running and sandbox.address is not None
            if is_expected_running and container_id not in running:
                self.container_exited(ContainerExit(container_id, exit_code=-1, is_oom=False))

    # -- configuration changes ----------------------------------------------------------

    def update_functions(self, functions: Mapping[str, FunctionSpec]) -> None:
        """Apply a reloaded routing table: new functions get a pool; changed ones are
        recycled; removed ones stop taking work and lose their sandboxes."""
        for name, spec in functions.items():
            pool = self._pools.get(name)
            if pool is None:
                self._pools[name] = FunctionPool(spec, self._settings.queue_size)
            elif pool.function != spec or pool.is_removed:
                pool.function, pool.is_removed = spec, False
                self.recycle(name, reason="settings changed")
        for name in self._pools.keys() - functions.keys():
            pool = self._pools[name]
            if not pool.is_removed:
                pool.is_removed = True
                while pool.queue:
                    pool.queue.popleft().settle(RouteNotFound(f"function {name!r} was removed"))
                self.recycle(name, reason="function removed")

    def recycle(self, function_name: str, *, reason: str) -> None:
        """Retire a function's sandboxes so new work runs its current code and settings:
        idle, stopped and starting ones now, busy ones once their invocation is answered."""
        pool = self._pools[function_name]
        pool.generation += 1
        log.info("recycling sandboxes", function=function_name, reason=reason)
        for sandbox in list(pool.sandboxes):
            if sandbox.state is not SandboxState.BUSY:
                self._retire(sandbox, reason=reason)

    # -- idle containers ----------------------------------------------------------------

    def reap(self, now_s: float) -> None:
        """Stop sandboxes idle past their timeout, remove those stopped past the retention
        period, and start sandboxes ``min_warm`` asks for."""
        for pool in self._pools.values():
            idle_timeout_s = pool.function.idle_timeout_s or self._settings.idle_timeout_s
            for sandbox in idle_to_stop(
                pool.sandboxes,
                now_s=now_s,
                idle_timeout_s=idle_timeout_s,
                min_warm=pool.function.min_warm,
            ):
                self._stop(pool, sandbox, now_s)
            retention_s = self._settings.stopped_retention_s
            for sandbox in stopped_to_remove(pool.sandboxes, now_s=now_s, retention_s=retention_s):
                self._retire(sandbox, reason="retention")
            min_warm = 0 if pool.is_removed else pool.function.min_warm
            for _ in range(warm_needed(pool.sandboxes, min_warm=min_warm)):
                self._start_sandbox(pool)

    def _stop(self, pool: FunctionPool, sandbox: Sandbox, now_s: float) -> None:
        """Stop an idle sandbox's container but keep it for a warm start."""
        pool.idle.remove(sandbox)
        sandbox.state, sandbox.stopped_s = SandboxState.STOPPED, now_s
        self._forget_address(sandbox)  # the engine gives it a new address on restart
        if sandbox.poll is not None and not sandbox.poll.done():
            sandbox.poll.set_exception(SandboxRetired("idle"))
        log.info("sandbox stopped", function=pool.function.name, instance=sandbox.instance[:8])
        self._own(self._stop_container(sandbox))

    async def _stop_container(self, sandbox: Sandbox) -> None:
        assert sandbox.container_id is not None
        try:
            await self._backend.stop(sandbox.container_id)
        except EngineUnavailable as exc:
            log.warning(
                "container stop failed", container=sandbox.container_id[:12], error=str(exc)
            )
            self._retire(sandbox, reason="stop failed")

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.reap_interval_s)
            self.reap(self._clock())

    # -- retiring and shutdown ----------------------------------------------------------

    def _forget_address(self, sandbox: Sandbox) -> None:
        if sandbox.address is not None and self._by_address.get(sandbox.address) is sandbox:
            del self._by_address[sandbox.address]
        sandbox.address = None

    def _retire(
        self, sandbox: Sandbox, *, reason: str, result: InvocationResult | None = None
    ) -> None:
        """Take a sandbox out of service for good and remove its container."""
        if sandbox.state is SandboxState.DEAD:
            return
        pool = self._pools[sandbox.function.name]
        sandbox.state = SandboxState.DEAD
        sandbox.disarm()
        pool.sandboxes.discard(sandbox)
        if sandbox in pool.idle:
            pool.idle.remove(sandbox)
        self._forget_address(sandbox)
        if sandbox.current is not None:  # its caller gets `result`, or "the runtime exited"
            sandbox.current.settle(result or exit_result(-1, is_oom=False))
            self.journal.conclude(sandbox, sandbox.current)
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
        self._by_container.pop(sandbox.container_id, None)
        try:
            await self._backend.remove(sandbox.container_id)
        except EngineUnavailable as exc:
            log.warning(
                "container removal failed", container=sandbox.container_id[:12], error=str(exc)
            )

    async def start(self) -> None:
        """Remove what a previous run of this stack left, start ``min_warm`` sandboxes, and
        start the reaper and the exit watcher."""
        removed = await self._backend.remove_stack(self._settings.stack)
        if removed:
            log.info("removed leftover containers", count=removed, stack=self._settings.stack)
        self._loops = [
            start_loop(self._reap_forever(), "idle reaper"),
            start_loop(self._watch_exits(), "exit watcher"),
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
            while pool.queue:
                pool.queue.popleft().settle(shutting_down)
            for sandbox in list(pool.sandboxes):
                self._retire(sandbox, reason="shutdown")
        while self._tasks:
            await asyncio.gather(*self._tasks.running(), return_exceptions=True)
        await self._backend.remove_stack(self._settings.stack)
