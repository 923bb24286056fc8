"""The pool's shell, driven through a fake container backend and fake runtimes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest

from edgelambda.config import Settings
from edgelambda.containers import ContainerExit
from edgelambda.errors import InvalidRequestId, RouteNotFound, SandboxRetired, TooManyRequests
from edgelambda.invocation import EXIT_ERROR_TYPE, OOM_ERROR_TYPE, TIMEOUT_ERROR_TYPE, Invocation
from edgelambda.logs import RecordingSink
from edgelambda.pool import Pool
from edgelambda.routing import FunctionSpec
from edgelambda.sandbox import SandboxState
from tests.fakes import Clock, FakeBackend, function_spec


def make_pool(
    backend: FakeBackend,
    function: FunctionSpec,
    clock: Clock | None = None,
    sink: RecordingSink | None = None,
    **settings: float,
) -> Pool:
    defaults: dict[str, float] = {
        "queue_size": 10,
        "shutdown_grace_s": 0.1,
        "idle_timeout_s": 60,
        "stopped_retention_s": 600,
        "reap_interval_s": 3600,  # tests call reap() themselves
    }
    return Pool(
        functions={function.name: function},
        backend=backend,
        settings=Settings(**{**defaults, **settings}),  # type: ignore[arg-type]
        runtime_api="10.0.0.1:9001",
        clock=clock or Clock(),
        sink=sink or RecordingSink(),
    )


async def runtime(pool: Pool, address: str, answer: Callable[[bytes], bytes]) -> None:
    """A well-behaved runtime: poll, answer, repeat."""
    sandbox = await pool.sandbox_at(address)
    assert sandbox is not None
    while True:
        invocation = await pool.next_invocation(sandbox)
        pool.respond(sandbox, invocation.request_id, answer(invocation.payload))


async def settle() -> None:
    """Let the pool's own tasks (starts, stops) run."""
    for _ in range(5):
        await asyncio.sleep(0)


async def stop_all(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_burst_starts_at_most_max_concurrency_sandboxes() -> None:
    backend = FakeBackend()
    pool = make_pool(backend, function_spec(max_concurrency=2))
    invocations = [Invocation(payload=str(i).encode()) for i in range(5)]
    calls = [asyncio.create_task(pool.invoke("fn", inv)) for inv in invocations]
    await settle()
    runtimes = [
        asyncio.create_task(runtime(pool, a, lambda p: p + b"!")) for a in ("10.0.0.2", "10.0.0.3")
    ]

    results = await asyncio.gather(*calls)

    assert [r.payload for r in results] == [b"0!", b"1!", b"2!", b"3!", b"4!"]
    assert len(backend.started) == 2
    await stop_all(*runtimes)
    await pool.close()
    assert sorted(backend.removed) == ["c1", "c2"]


async def test_a_full_queue_answers_429() -> None:
    pool = make_pool(FakeBackend(), function_spec(max_concurrency=1), queue_size=1)
    first = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"1")))
    await settle()

    with pytest.raises(TooManyRequests):
        await pool.invoke("fn", Invocation(payload=b"2"))

    await stop_all(first)
    await pool.close()


async def test_a_call_waiting_past_the_queue_wait_answers_429() -> None:
    pool = make_pool(FakeBackend(), function_spec(max_concurrency=1), queue_wait_s=0.01)

    with pytest.raises(TooManyRequests, match="no sandbox within"):
        await pool.invoke("fn", Invocation(payload=b"1"))  # no runtime ever polls

    await pool.close()


async def test_an_init_error_fails_the_waiting_call_and_retires_the_sandbox() -> None:
    backend = FakeBackend()
    pool = make_pool(backend, function_spec())
    call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"{}")))
    await settle()
    sandbox = await pool.sandbox_at("10.0.0.2")
    assert sandbox is not None
    error = json.dumps({"errorType": "Runtime.ImportModuleError", "errorMessage": "no app"})

    pool.init_failed(sandbox, error.encode(), "Runtime.ImportModuleError")
    result = await call

    assert result.error_type == "Runtime.ImportModuleError"
    await pool.close()
    assert backend.removed == ["c1"]
    assert await pool.sandbox_at("10.0.0.2") is None


async def test_a_deadline_answers_with_lambdas_timeout_error() -> None:
    backend = FakeBackend()
    pool = make_pool(backend, function_spec(timeout_s=0.05))
    call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"{}")))
    await settle()
    sandbox = await pool.sandbox_at("10.0.0.2")
    assert sandbox is not None
    poll = asyncio.create_task(pool.next_invocation(sandbox))  # takes it, never answers

    result = await call

    assert result.error_type == TIMEOUT_ERROR_TYPE
    assert b"Task timed out after 0.05 seconds" in result.payload
    assert (await poll).request_id  # it was delivered
    await pool.close()
    assert backend.removed == ["c1"]


async def test_an_invocation_lost_in_delivery_goes_to_the_next_sandbox() -> None:
    backend = FakeBackend()
    pool = make_pool(backend, function_spec(max_concurrency=2))
    call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"x")))
    await settle()
    first = await pool.sandbox_at("10.0.0.2")
    assert first is not None

    taken = await pool.next_invocation(first)
    pool.undeliverable(first, taken)  # the runtime's connection broke mid-response
    await settle()
    second = asyncio.create_task(runtime(pool, "10.0.0.3", lambda p: p * 2))
    result = await call

    assert result.payload == b"xx"
    assert backend.removed == ["c1"]
    await stop_all(second)
    await pool.close()


async def test_an_invocation_put_back_in_line_keeps_its_queue_wait_limit() -> None:
    pool = make_pool(FakeBackend(), function_spec(max_concurrency=1), queue_wait_s=0.2)
    call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"x")))
    await settle()
    first = await pool.sandbox_at("10.0.0.2")
    assert first is not None

    pool.undeliverable(first, await pool.next_invocation(first))  # no runtime polls again

    with pytest.raises(TooManyRequests, match="no sandbox within"):
        await asyncio.wait_for(call, timeout=5)
    await pool.close()


async def test_answers_for_another_invocation_are_refused() -> None:
    pool = make_pool(FakeBackend(), function_spec())
    call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"x")))
    await settle()
    sandbox = await pool.sandbox_at("10.0.0.2")
    assert sandbox is not None
    invocation = await pool.next_invocation(sandbox)

    with pytest.raises(InvalidRequestId):
        pool.respond(sandbox, "not-" + invocation.request_id, b"forged")
    pool.respond(sandbox, invocation.request_id, b"real")

    assert (await call).payload == b"real"
    await pool.close()


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


async def test_a_sandbox_finishing_its_call_takes_the_next_without_a_cold_start() -> None:
    backend = FakeBackend()
    pool = make_pool(backend, function_spec(max_concurrency=4))
    first = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"1")))
    await settle()
    sandbox = await pool.sandbox_at("10.0.0.2")
    assert sandbox is not None
    invocation = await pool.next_invocation(sandbox)
    pool.respond(sandbox, invocation.request_id, b"one")  # answered, not yet polling again

    second = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"2")))
    await settle()
    assert len(backend.started) == 1  # it waits a moment for the finishing sandbox
    follow_up = await pool.next_invocation(sandbox)
    pool.respond(sandbox, follow_up.request_id, b"two")

    assert ((await first).payload, (await second).payload) == (b"one", b"two")
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


async def test_each_invocation_gets_start_end_and_report_lines() -> None:
    sink = RecordingSink()
    pool = make_pool(FakeBackend(), function_spec(), sink=sink)
    calls = [asyncio.create_task(pool.invoke("fn", Invocation(payload=b"x"))) for _ in range(2)]
    await settle()
    sandbox = await pool.sandbox_at("10.0.0.2")
    assert sandbox is not None
    first = await pool.next_invocation(sandbox)
    pool.respond(sandbox, first.request_id, b"1")
    second = await pool.next_invocation(sandbox)
    pool.respond(sandbox, second.request_id, b"2")
    await asyncio.gather(*calls)
    await asyncio.wait_for(second.log.done.wait(), timeout=1)

    # END and REPORT are written once the output has caught up, timed before the next START:
    # in time order each invocation's lines stay together.
    records = sorted(sink.records, key=lambda record: record.time_s)
    platform = [r.message for r in records if r.stream == "platform"]
    assert platform[0] == f"START RequestId: {first.request_id} Version: $LATEST"
    assert platform[1] == f"END RequestId: {first.request_id}"
    report = next(
        line for line in platform if line.startswith(f"REPORT RequestId: {first.request_id}")
    )
    assert "Memory Size: 128 MB\tMax Memory Used: 42 MB\tInit Duration: " in report
    second_report = platform[-1]
    assert second_report.startswith(f"REPORT RequestId: {second.request_id}")
    assert "Init Duration" not in second_report  # only the cold invocation pays init
    await pool.close()
