"""The frozen standby, driven through the pool over a fake container backend: an idle
sandbox's container is paused with its runtime's poll still open, and unpaused for the next
call, whose deadline starts only once it runs again."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from edgelambda.containers import ContainerExit
from edgelambda.errors import EngineUnavailable
from edgelambda.invocation import Invocation
from edgelambda.pool import Pool
from edgelambda.sandbox import Sandbox, SandboxState
from tests.fakes import Clock, FakeBackend, function_spec
from tests.pools import make_pool, settle, stop_all


class SlowEngine(FakeBackend):
    """Pauses and unpauses take ``delay_s``; ``calls`` keeps their order; ``fail`` names
    the operations that fail as an engine that lost the container does."""

    def __init__(self, delay_s: float = 0.0, fail: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.fail = fail
        self.calls: list[str] = []

    async def pause(self, container_id: str) -> None:
        await self._engine_call("pause", container_id)
        await super().pause(container_id)

    async def unpause(self, container_id: str) -> None:
        await self._engine_call("unpause", container_id)
        await super().unpause(container_id)

    async def _engine_call(self, what: str, container_id: str) -> None:
        self.calls.append(f"{what} {container_id} begins")
        await asyncio.sleep(self.delay_s)
        self.calls.append(f"{what} {container_id} ends")
        if what in self.fail:
            raise EngineUnavailable(f"{what} {container_id}: no such container")


async def warm_sandbox(pool: Pool, clock: Clock) -> tuple[Sandbox, asyncio.Task[None]]:
    """One call served, then a runtime that keeps polling: a ready sandbox, idle from now."""
    call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"first")))
    await settle()
    sandbox = await pool.sandbox_at("10.0.0.2")
    assert sandbox is not None
    runtime = asyncio.create_task(serve(pool, sandbox))
    assert (await call).payload == b"first"
    await settle()
    assert sandbox.state is SandboxState.READY
    return sandbox, runtime


ANSWER_AFTER_S: dict[Sandbox, float] = {}  # how long a sandbox's handler takes


async def frozen_sandbox(
    backend: FakeBackend, clock: Clock
) -> tuple[Pool, Sandbox, asyncio.Task[None]]:
    """A pool (freeze_after 1 s) whose one sandbox has just been frozen, its runtime polling."""
    pool = make_pool(backend, function_spec(), clock=clock, freeze_after_s=1)
    sandbox, runtime = await warm_sandbox(pool, clock)
    clock.now_s += 1
    pool.reap(clock.now_s)
    await settle()
    return pool, sandbox, runtime


async def serve(pool: Pool, sandbox: Sandbox) -> None:
    """A runtime answering each invocation with its payload."""
    while True:
        invocation = await pool.next_invocation(sandbox)
        await asyncio.sleep(ANSWER_AFTER_S.get(sandbox, 0.0))
        pool.respond(sandbox, invocation.request_id, invocation.payload)


async def test_an_idle_sandbox_is_frozen_then_thawed_for_the_next_call() -> None:
    backend, clock = FakeBackend(), Clock()
    pool = make_pool(backend, function_spec(), clock=clock, freeze_after_s=5)
    sandbox, runtime = await warm_sandbox(pool, clock)

    clock.now_s += 4.9
    pool.reap(clock.now_s)
    assert sandbox.state is SandboxState.READY
    clock.now_s += 0.1
    pool.reap(clock.now_s)
    await settle()
    assert sandbox.state is SandboxState.FROZEN
    assert backend.paused == ["c1"]
    assert pool.snapshot()[0] == {("fn", "frozen"): 1}
    assert pool.by_state() == {"frozen": 1}

    result = await asyncio.wait_for(pool.invoke("fn", Invocation(payload=b"after")), 5)

    assert result.payload == b"after"  # served by the runtime's poll left open while frozen
    assert backend.unpaused == ["c1"]
    assert len(backend.started) == 1
    assert backend.restarted == []
    assert sandbox.state is SandboxState.READY
    await stop_all(runtime)
    await pool.close()


async def test_frozen_time_is_not_on_the_deadline() -> None:
    # The unpause takes longer than the whole timeout: the deadline starts after it.
    backend, clock = SlowEngine(delay_s=0.3), Clock()
    pool = make_pool(backend, function_spec(timeout_s=0.2), clock=clock, freeze_after_s=1)
    sandbox, runtime = await warm_sandbox(pool, clock)
    ANSWER_AFTER_S[sandbox] = 0.1
    clock.now_s += 1
    pool.reap(clock.now_s)
    await asyncio.sleep(0.35)  # the pause has landed

    result = await asyncio.wait_for(pool.invoke("fn", Invocation(payload=b"late")), 5)

    assert result.error_type is None
    assert result.payload == b"late"
    await stop_all(runtime)
    await pool.close()


async def test_an_unpause_waits_for_the_pause_still_in_flight() -> None:
    backend, clock = SlowEngine(delay_s=0.05), Clock()
    pool = make_pool(backend, function_spec(), clock=clock, freeze_after_s=1)
    _, runtime = await warm_sandbox(pool, clock)
    clock.now_s += 1
    pool.reap(clock.now_s)
    await settle()  # the pause has begun, not ended

    assert (await asyncio.wait_for(pool.invoke("fn", Invocation(payload=b"x")), 5)).payload == b"x"
    assert backend.calls == [
        "pause c1 begins",
        "pause c1 ends",
        "unpause c1 begins",
        "unpause c1 ends",
    ]
    await stop_all(runtime)
    await pool.close()


async def test_a_frozen_sandbox_past_its_idle_timeout_is_stopped() -> None:
    backend, clock = FakeBackend(), Clock()
    pool = make_pool(backend, function_spec(), clock=clock, freeze_after_s=5, idle_timeout_s=60)
    sandbox, runtime = await warm_sandbox(pool, clock)
    clock.now_s += 5
    pool.reap(clock.now_s)
    clock.now_s += 55
    pool.reap(clock.now_s)
    await settle()

    assert sandbox.state is SandboxState.STOPPED
    assert backend.paused == ["c1"]
    assert backend.stopped == ["c1"]
    assert runtime.done()  # its poll ended with the container
    await pool.close()


async def test_a_frozen_container_the_engine_lost_is_replaced() -> None:
    backend, clock = SlowEngine(fail=frozenset({"unpause"})), Clock()
    pool, sandbox, runtime = await frozen_sandbox(backend, clock)

    call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"x")))
    await settle()
    await settle()

    assert sandbox.state is SandboxState.DEAD
    assert backend.removed == ["c1"]
    assert len(backend.started) == 2  # a cold start takes the call instead
    replacement = await pool.sandbox_at("10.0.0.3")
    assert replacement is not None
    second = asyncio.create_task(serve(pool, replacement))
    assert (await asyncio.wait_for(call, 5)).payload == b"x"
    await stop_all(runtime, second)
    await pool.close()


async def test_a_frozen_container_that_exits_is_retired() -> None:
    backend, clock = FakeBackend(), Clock()
    pool, sandbox, runtime = await frozen_sandbox(backend, clock)
    await pool.start()  # its exit watcher

    backend.exit_events.put_nowait(ContainerExit("c1", exit_code=137, is_oom=False))
    await asyncio.sleep(0.05)

    assert sandbox.state is SandboxState.DEAD
    assert backend.removed == ["c1"]
    await stop_all(runtime)
    await pool.close()


async def test_a_failed_pause_retires_the_sandbox() -> None:
    backend, clock = SlowEngine(fail=frozenset({"pause"})), Clock()
    pool, sandbox, runtime = await frozen_sandbox(backend, clock)

    assert sandbox.state is SandboxState.DEAD
    assert backend.removed == ["c1"]
    await stop_all(runtime)
    await pool.close()


async def test_freezing_can_be_turned_off_globally_or_per_function() -> None:
    for settings, function in (
        ({"freeze_after_s": 0}, function_spec()),
        ({"freeze_after_s": 5}, replace(function_spec(), freeze_after_s=0)),
    ):
        backend, clock = FakeBackend(), Clock()
        pool = make_pool(backend, function, clock=clock, **settings)
        sandbox, runtime = await warm_sandbox(pool, clock)
        clock.now_s += 30
        pool.reap(clock.now_s)
        await settle()
        assert sandbox.state is SandboxState.READY
        assert backend.paused == []
        await stop_all(runtime)
        await pool.close()


async def test_a_function_may_freeze_sooner_than_the_default() -> None:
    backend, clock = FakeBackend(), Clock()
    function = replace(function_spec(), freeze_after_s=0.5)
    pool = make_pool(backend, function, clock=clock, freeze_after_s=5)
    sandbox, runtime = await warm_sandbox(pool, clock)
    clock.now_s += 0.5
    pool.reap(clock.now_s)
    await settle()
    assert sandbox.state is SandboxState.FROZEN
    await stop_all(runtime)
    await pool.close()


async def test_ten_calls_thaw_as_many_frozen_sandboxes_and_start_none() -> None:
    backend, clock = FakeBackend(), Clock()
    pool = make_pool(backend, function_spec(max_concurrency=3), clock=clock, freeze_after_s=1)
    calls = [asyncio.create_task(pool.invoke("fn", Invocation(payload=b"w"))) for _ in range(3)]
    await settle()
    sandboxes = [await pool.sandbox_at(f"10.0.0.{n}") for n in (2, 3, 4)]
    runtimes = [asyncio.create_task(serve(pool, s)) for s in sandboxes if s is not None]
    await asyncio.gather(*calls)
    await settle()
    clock.now_s += 1
    pool.reap(clock.now_s)
    await settle()
    assert len(backend.paused) == 3

    call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"one")))
    await asyncio.wait_for(call, 5)
    assert len(backend.unpaused) == 1  # one call thaws one sandbox, not all of them

    results = await asyncio.gather(
        *(pool.invoke("fn", Invocation(payload=b"%d" % n)) for n in range(10))
    )
    assert sorted(r.payload for r in results) == sorted(b"%d" % n for n in range(10))
    assert len(backend.unpaused) == 3
    assert len(backend.started) == 3
    await stop_all(*runtimes)
    await pool.close()
