"""How sandboxes come and go, driven through the pool over a fake container backend: crashes,
idle stops and warm starts, min_warm, engine restarts, reloads, failed starts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from structlog.testing import capture_logs

from edgelambda.containers import (
    BackendAbilities,
    ContainerExit,
    ContainerSpec,
    StartedContainer,
)
from edgelambda.errors import (
    EngineUnavailable,
    RouteNotFound,
    SandboxRetired,
)
from edgelambda.invocation import EXIT_ERROR_TYPE, OOM_ERROR_TYPE, Invocation
from edgelambda.sandbox import SandboxState
from tests.fakes import Clock, FakeBackend, function_spec
from tests.pools import make_pool, runtime, settle, stop_all


@pytest.mark.parametrize(
    ("is_oom", "error_type"), [(False, EXIT_ERROR_TYPE), (True, OOM_ERROR_TYPE)]
)
async def test_a_container_dying_mid_invocation_fails_it(is_oom: bool, error_type: str) -> None:
    backend = FakeBackend()
    pool = make_pool(backend, function_spec())
    await pool.start()
    call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"x")))
    await settle()
    sandbox = await pool.sandbox_at("10.0.0.2")
    assert sandbox is not None
    await pool.next_invocation(sandbox)

    backend.exit_events.put_nowait(
        ContainerExit("c1", exit_code=137 if is_oom else 1, is_oom=is_oom)
    )
    result = await call

    assert result.error_type == error_type
    await settle()
    assert backend.removed == ["c1"]
    await pool.close()


async def test_idle_sandboxes_stop_then_warm_start_then_expire() -> None:
    backend, clock = FakeBackend(), Clock()
    pool = make_pool(backend, function_spec(), clock=clock)
    call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"1")))
    await settle()
    first = asyncio.create_task(runtime(pool, "10.0.0.2", lambda p: p))
    await call
    await settle()

    clock.now_s += 59
    pool.reap(clock.now_s)
    assert backend.stopped == []
    clock.now_s += 1
    pool.reap(clock.now_s)
    await settle()
    assert backend.stopped == ["c1"]
    assert first.done()  # its poll ended: the runtime is gone with the container

    call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"2")))
    await settle()
    assert backend.restarted == ["c1"]  # warm start: the same container, no create
    assert len(backend.started) == 1
    second = asyncio.create_task(runtime(pool, "10.0.0.3", lambda p: p + b"!"))
    assert (await call).payload == b"2!"

    clock.now_s += 60
    pool.reap(clock.now_s)
    clock.now_s += 600
    pool.reap(clock.now_s)
    await settle()
    assert backend.removed == ["c1"]  # stopped past the retention period
    await stop_all(first, second)
    await pool.close()


class ClusterBackend(FakeBackend):
    """A backend that cannot start a container again nor freeze one, as Swarm's."""

    abilities = BackendAbilities(can_restart=False, can_freeze=False)


async def test_where_the_backend_cannot_restart_or_freeze_an_idle_sandbox_is_retired() -> None:
    backend, clock = ClusterBackend(), Clock()
    pool = make_pool(backend, function_spec(), clock=clock, freeze_after_s=1)
    call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"1")))
    await settle()
    first = asyncio.create_task(runtime(pool, "10.0.0.2", lambda p: p))
    await call
    await settle()

    clock.now_s += 30  # past freeze_after: nothing to freeze with
    pool.reap(clock.now_s)
    await settle()
    assert backend.paused == []
    clock.now_s += 30  # past the idle timeout: retired, not kept stopped
    pool.reap(clock.now_s)
    await settle()
    assert (backend.stopped, backend.removed) == ([], ["c1"])

    call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"2")))
    await settle()
    assert backend.restarted == []  # a new sandbox, never a restart
    assert len(backend.started) == 2
    second = asyncio.create_task(runtime(pool, "10.0.0.3", lambda p: p + b"!"))
    assert (await call).payload == b"2!"
    await stop_all(first, second)
    await pool.close()


async def test_min_warm_sandboxes_start_with_the_pool_and_stay() -> None:
    backend, clock = FakeBackend(), Clock()
    pool = make_pool(backend, function_spec(min_warm=1), clock=clock)
    await pool.start()
    await settle()
    assert len(backend.started) == 1
    warm = asyncio.create_task(runtime(pool, "10.0.0.2", lambda p: p))
    await settle()

    clock.now_s += 3600
    pool.reap(clock.now_s)
    await settle()

    assert backend.stopped == []
    await stop_all(warm)
    await pool.close()


class RestartingEngine(FakeBackend):
    """An engine whose event stream ends when it restarts, as the Docker engine's does."""

    def __init__(self) -> None:
        super().__init__()
        self.engine_restarted = asyncio.Event()

    async def exits(self, stack: str) -> AsyncIterator[ContainerExit]:
        await self.engine_restarted.wait()
        self.engine_restarted.clear()
        return
        yield  # an async generator that ends without an event


async def test_engine_restart_is_noticed_by_reconciling() -> None:
    backend = RestartingEngine()
    pool = make_pool(backend, function_spec())
    await pool.start()
    call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"x")))
    await settle()
    sandbox = await pool.sandbox_at("10.0.0.2")
    assert sandbox is not None
    await pool.next_invocation(sandbox)
    backend.removed.append("c1")  # the container vanished while no events were heard

    backend.engine_restarted.set()

    assert (await asyncio.wait_for(call, timeout=5)).error_type == EXIT_ERROR_TYPE
    assert sandbox.state is SandboxState.DEAD
    await pool.close()


async def test_recycling_retires_idle_sandboxes_now_and_busy_ones_after_their_call() -> None:
    backend = FakeBackend()
    pool = make_pool(backend, function_spec(max_concurrency=2))
    calls = [asyncio.create_task(pool.invoke("fn", Invocation(payload=b"x"))) for _ in range(2)]
    await settle()
    busy, idle = await pool.sandbox_at("10.0.0.2"), await pool.sandbox_at("10.0.0.3")
    assert busy is not None
    assert idle is not None
    busy_call = await pool.next_invocation(busy)
    idle_call = await pool.next_invocation(idle)
    pool.respond(idle, idle_call.request_id, b"done")
    idle_poll = asyncio.create_task(pool.next_invocation(idle))
    await settle()

    pool.recycle("fn", reason="code changed")
    await settle()

    assert idle.state is SandboxState.DEAD
    assert idle_poll.done()
    assert busy.state is SandboxState.BUSY  # its call runs to the end on the old code
    pool.respond(busy, busy_call.request_id, b"old code")
    with pytest.raises(SandboxRetired):
        await pool.next_invocation(busy)  # asks for more: retired instead
    assert busy.state is SandboxState.DEAD
    assert [(await c).payload for c in calls] == [b"old code", b"done"]
    await pool.close()


async def test_a_removed_function_is_unknown_and_a_new_one_is_served() -> None:
    pool = make_pool(FakeBackend(), function_spec())

    pool.update_functions({"other": replace(function_spec(), name="other")})

    with pytest.raises(RouteNotFound):
        await pool.invoke("fn", Invocation(payload=b"x"))
    call = asyncio.create_task(pool.invoke("other", Invocation(payload=b"y")))
    await settle()
    runner = asyncio.create_task(runtime(pool, "10.0.0.2", lambda p: p + b"!"))
    assert (await call).payload == b"y!"
    await stop_all(runner)
    await pool.close()


class FailingStarts(FakeBackend):
    """An engine that fails every container start, once the test lets it."""

    def __init__(self) -> None:
        super().__init__()
        self.may_fail = asyncio.Event()

    async def start(self, spec: ContainerSpec) -> StartedContainer:
        await self.may_fail.wait()
        raise EngineUnavailable("engine said no")


async def test_a_start_failing_after_a_reload_retired_its_sandbox_fails_the_call_cleanly() -> None:
    backend = FailingStarts()
    pool = make_pool(backend, function_spec(max_concurrency=1))
    call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"x")))
    await settle()

    with capture_logs() as logs:
        pool.recycle("fn", reason="settings changed")  # retires the sandbox being created
        backend.may_fail.set()
        with pytest.raises(EngineUnavailable, match="engine said no"):
            await asyncio.wait_for(call, timeout=1)
        await settle()

    assert [e for e in logs if e["event"] == "background task failed"] == []
    await pool.close()
