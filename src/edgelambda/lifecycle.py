"""How sandboxes come and go: cold and warm starts, the runtime's init deadline, the frozen
standby (an idle container paused, thawed for the next call), idle stops and warm restarts,
exits the engine reports, reloads of the routing file, and retirement.

The decisions are :mod:`edgelambda.sandbox`'s pure functions and guarded transitions; the
containers are :class:`~edgelambda.sandbox_engine.SandboxEngine`'s. Whenever a sandbox
leaves service or is thawed, the pool is told (``on_change``) so waiting work finds one.

It shares the pool's map of function pools (``pools``): a reload adds to it here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import structlog

from edgelambda.config import Settings
from edgelambda.containers import BackendAbilities, ContainerExit
from edgelambda.errors import EdgeLambdaError, RouteNotFound
from edgelambda.invocation import (
    INIT_TIMEOUT_ERROR_TYPE,
    InvocationResult,
    error_result,
    exit_result,
)
from edgelambda.journal import Journal
from edgelambda.routing import FunctionSpec
from edgelambda.sandbox import (
    FunctionPool,
    PayloadTally,
    Sandbox,
    SandboxState,
    idle_to_stop,
    reap_plan,
)
from edgelambda.sandbox_engine import Running, SandboxEngine
from edgelambda.tasks import TaskSet

log = structlog.get_logger(__name__)


def freeze_after_s(
    settings: Settings, function: FunctionSpec, abilities: BackendAbilities | None = None
) -> float:
    """How long ``function``'s ready sandboxes idle before they are frozen (0: never, also
    where the backend cannot freeze)."""
    if abilities is not None and not abilities.can_freeze:
        return 0.0
    return settings.freeze_after_s if function.freeze_after_s is None else function.freeze_after_s


class Lifecycle:
    """Starts, stops and retires the sandboxes of every function pool."""

    def __init__(
        self,
        *,
        pools: dict[str, FunctionPool],
        engine: SandboxEngine,
        journal: Journal,
        settings: Settings,
        clock: Callable[[], float],
        tasks: TaskSet,
        on_change: Callable[[FunctionPool], None],
        payloads: PayloadTally,
    ) -> None:
        self._pools = pools
        self._engine = engine
        self._journal = journal
        self._settings = settings
        self._clock = clock
        self._tasks = tasks
        self._on_change = on_change  # a sandbox left service or thawed: hand work on
        self._payloads = payloads  # the waiting payloads of every function, for a new pool
        self._pausing: dict[Sandbox, asyncio.Task[None]] = {}  # pauses still in flight

    # -- starting ----------------------------------------------------------------------

    def start_sandbox(self, pool: FunctionPool) -> None:
        """Warm-start the most recently stopped sandbox, or cold-start a new one."""
        sandbox = pool.stopped()
        if sandbox is None:
            sandbox = pool.new_sandbox(self._clock())
            self._tasks.spawn(self._cold_start(pool, sandbox))
        else:
            sandbox.restart(self._clock())
            self._tasks.spawn(self._warm_start(pool, sandbox))

    async def _cold_start(self, pool: FunctionPool, sandbox: Sandbox) -> None:
        try:
            running = await self._engine.create(sandbox)
        except EdgeLambdaError as exc:
            log.error("cold start failed", function=pool.function.name, error=str(exc))
            self._abandon_start(pool, sandbox, exc)
            return
        await self._started(sandbox, running, kind="cold")

    async def _warm_start(self, pool: FunctionPool, sandbox: Sandbox) -> None:
        try:
            running = await self._engine.restart(sandbox)
        except EdgeLambdaError as exc:
            # The kept container is unusable; drop it and let the queue cold-start instead.
            log.warning("warm start failed", function=pool.function.name, error=str(exc))
            self.retire(sandbox, reason="warm start failed")
            return
        await self._started(sandbox, running, kind="warm")

    async def _started(self, sandbox: Sandbox, running: Running, *, kind: str) -> None:
        """The container runs: register its address and give its runtime time to poll."""
        if sandbox.state is not SandboxState.STARTING:  # retired meanwhile (shutdown, crash)
            if sandbox.state is SandboxState.DEAD:
                await self._engine.remove(sandbox)
            return
        log.info(
            "container started",
            function=sandbox.function.name,
            container=(sandbox.container_id or "")[:12],
            start=kind,
            start_ms=round((self._clock() - sandbox.started_s) * 1000, 1),
        )
        sandbox.timer = asyncio.get_running_loop().call_later(
            self._settings.init_timeout_s, self._on_init_timeout, sandbox
        )
        assert sandbox.container_id is not None
        self._tasks.spawn(
            self._journal.follow(sandbox, sandbox.container_id, since_s=running.since_s)
        )
        await self._engine.register(sandbox, running.address)

    def runtime_ready(self, sandbox: Sandbox) -> None:
        """``sandbox``'s runtime polled for the first time: its start is over."""
        ready_ms = (self._clock() - sandbox.started_s) * 1000
        if sandbox.is_cold:
            self._journal.initialised(sandbox, ready_ms)
        log.info(
            "runtime ready",
            function=sandbox.function.name,
            container=(sandbox.container_id or "")[:12],
            start="cold" if sandbox.is_cold else "warm",
            ready_ms=round(ready_ms, 1),
        )

    def _abandon_start(self, pool: FunctionPool, sandbox: Sandbox, error: EdgeLambdaError) -> None:
        """A sandbox could not start: fail the invocation it was for, and every waiting one
        when no other sandbox is left to serve them (also when a reload or shutdown retired
        it while it was being created)."""
        if sandbox.state is not SandboxState.DEAD:
            sandbox.retire("start failed", exit_result(-1, is_oom=False))
        pool.forget(sandbox)
        if (first := pool.take_first()) is not None:
            first.settle(error)
        if not pool.running:
            pool.fail_waiting(error)

    def _on_init_timeout(self, sandbox: Sandbox) -> None:
        sandbox.timer = None
        if sandbox.state is SandboxState.STARTING:
            message = f"runtime did not poll within {self._settings.init_timeout_s:g} s"
            self.fail_start(sandbox, error_result(INIT_TIMEOUT_ERROR_TYPE, message))

    def fail_start(self, sandbox: Sandbox, result: InvocationResult) -> None:
        """The runtime failed before taking work: fail the invocation it would have served."""
        pool = self._pools[sandbox.function.name]
        victim = sandbox.current or pool.take_first()
        if victim is not None:
            victim.settle(result)
        self.retire(sandbox, reason=result.error_type or "init failed")

    # -- the engine's side --------------------------------------------------------------

    def container_exited(self, sandbox: Sandbox, exit: ContainerExit) -> None:
        """``sandbox``'s container stopped without being asked to (crash, OOM kill, engine
        restart)."""
        if not sandbox.state.is_running:
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
            self.fail_start(sandbox, result)
            return
        self.retire(sandbox, reason=result.error_type or "exited", result=result)

    # -- configuration changes ----------------------------------------------------------

    def update_functions(self, functions: Mapping[str, FunctionSpec]) -> None:
        """Apply a reloaded routing table: new functions get a pool; changed ones are
        recycled; removed ones stop taking work and lose their sandboxes."""
        for name, spec in functions.items():
            pool = self._pools.get(name)
            if pool is None:
                self._pools[name] = FunctionPool(
                    spec, self._settings.queue_size, payloads=self._payloads
                )
            elif pool.configure(spec):
                self.recycle(name, reason="settings changed")
        for name in self._pools.keys() - functions.keys():
            if self._pools[name].remove(RouteNotFound(f"function {name!r} was removed")):
                self.recycle(name, reason="function removed")

    def recycle(self, function_name: str, *, reason: str) -> None:
        """Retire a function's sandboxes so new work runs its current code and settings:
        idle, stopped and starting ones now, busy ones once their invocation is answered."""
        pool = self._pools[function_name]
        pool.outdate()
        log.info("recycling sandboxes", function=function_name, reason=reason)
        for sandbox in list(pool.sandboxes):
            if sandbox.state is not SandboxState.BUSY:
                self.retire(sandbox, reason=reason)

    # -- idle sandboxes -----------------------------------------------------------------

    def remove_idle(self, function_name: str) -> int:
        """Retire the function's idle sandboxes (ready or frozen) now, as an operator asks,
        and remove their containers; busy and starting ones are left alone, and so are the
        most recently used as ``min_warm`` keeps running. How many were retired."""
        pool = self._pools[function_name]
        # Idle for any time at all: the reaper's own choice, min_warm kept, least recent first.
        spare = idle_to_stop(
            pool.sandboxes, now_s=self._clock(), idle_timeout_s=0, min_warm=pool.function.min_warm
        )
        for sandbox in spare:
            self.retire(sandbox, reason="removed by an operator")
        return len(spare)

    def reap(self, now_s: float) -> None:
        """Stop sandboxes idle past their timeout, remove those stopped past the retention
        period, and start sandboxes ``min_warm`` asks for."""
        for pool in self._pools.values():
            plan = reap_plan(
                pool,
                now_s=now_s,
                freeze_after_s=freeze_after_s(
                    self._settings, pool.function, self._engine.abilities
                ),
                idle_timeout_s=pool.function.idle_timeout_s or self._settings.idle_timeout_s,
                retention_s=self._settings.stopped_retention_s,
            )
            for sandbox in plan.to_freeze:
                self._freeze(pool, sandbox)
            for sandbox in plan.to_stop:
                self._stop(pool, sandbox, now_s)
            for sandbox in plan.to_remove:
                self.retire(sandbox, reason="retention")
            for _ in range(plan.to_start):
                self.start_sandbox(pool)

    # -- the frozen standby -------------------------------------------------------------

    def _freeze(self, pool: FunctionPool, sandbox: Sandbox) -> None:
        """Pause an idle sandbox's container: it costs no CPU, and its runtime's poll stays
        open, so the next call needs only an unpause (:meth:`thaw`)."""
        sandbox.freeze()
        pool.unpark(sandbox)
        self._pausing[sandbox] = self._tasks.spawn(self._pause(sandbox))

    async def _pause(self, sandbox: Sandbox) -> None:
        try:
            if not await self._engine.pause(sandbox) and sandbox.state is SandboxState.FROZEN:
                self.retire(sandbox, reason="pause failed")
        finally:
            self._pausing.pop(sandbox, None)

    def thaw(self, pool: FunctionPool, sandbox: Sandbox) -> None:
        """Unpause a frozen sandbox for work that waits; it takes work once it runs again.
        No invocation is handed to it before then, so frozen time is never on a deadline."""
        sandbox.thaw()
        self._tasks.spawn(self._thaw(pool, sandbox))

    async def _thaw(self, pool: FunctionPool, sandbox: Sandbox) -> None:
        started_s = self._clock()
        await self._paused(sandbox)  # an unpause must not overtake the pause
        if sandbox.state is SandboxState.THAWING and not await self._engine.unpause(sandbox):
            self.retire(sandbox, reason="unpause failed")
        if sandbox.state is not SandboxState.THAWING:
            return  # retired meanwhile (crashed, engine lost, reload, shutdown)
        sandbox.thawed()
        pool.park(sandbox)
        log.info(
            "sandbox thawed",
            function=pool.function.name,
            instance=sandbox.instance[:8],
            thaw_ms=round((self._clock() - started_s) * 1000, 1),
        )
        self._on_change(pool)

    async def _paused(self, sandbox: Sandbox) -> None:
        """Wait for ``sandbox``'s pause, if one is still in flight."""
        pausing = self._pausing.get(sandbox)
        if pausing is not None:
            await asyncio.wait({pausing})

    def _stop(self, pool: FunctionPool, sandbox: Sandbox, now_s: float) -> None:
        """Stop an idle sandbox's container (frozen or not) but keep it for a warm start;
        the engine kills a paused container as it does a running one. A backend that cannot
        start a container again has nothing to keep: the sandbox is retired."""
        if not self._engine.abilities.can_restart:
            self.retire(sandbox, reason="idle")
            return
        sandbox.stop(now_s)
        pool.unpark(sandbox)
        self._engine.forget_address(sandbox)  # the engine gives it a new address on restart
        log.info("sandbox stopped", function=pool.function.name, instance=sandbox.instance[:8])
        self._tasks.spawn(self._stop_container(sandbox))

    async def _stop_container(self, sandbox: Sandbox) -> None:
        await self._paused(sandbox)
        if not await self._engine.stop(sandbox):
            self.retire(sandbox, reason="stop failed")

    async def reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.reap_interval_s)
            self.reap(self._clock())

    # -- retiring -----------------------------------------------------------------------

    def retire(
        self, sandbox: Sandbox, *, reason: str, result: InvocationResult | None = None
    ) -> None:
        """Take a sandbox out of service for good and remove its container."""
        if sandbox.state is SandboxState.DEAD:
            return
        pool = self._pools[sandbox.function.name]
        # The invocation it held gets `result`, or "the runtime exited".
        held = sandbox.retire(reason, result or exit_result(-1, is_oom=False))
        pool.forget(sandbox)
        self._engine.forget_address(sandbox)
        if held is not None:
            self._journal.conclude(sandbox, held)
        log.info(
            "sandbox retired",
            function=sandbox.function.name,
            instance=sandbox.instance[:8],
            reason=reason,
        )
        if sandbox.container_id is not None:
            self._tasks.spawn(self._engine.remove(sandbox))
        self._on_change(pool)
