"""The pool's shell, driven through a fake container backend and fake runtimes: queueing,
dispatch, deadlines and the Runtime API's side."""

from __future__ import annotations

import asyncio
import json

import pytest

from edgelambda.errors import (
    InvalidRequestId,
    RouteNotFound,
    SandboxRetired,
    TooManyRequests,
)
from edgelambda.invocation import TIMEOUT_ERROR_TYPE, Invocation
from edgelambda.logs import RecordingSink
from tests.fakes import Clock, FakeBackend, function_spec
from tests.pools import make_pool, runtime, settle, stop_all


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


async def test_work_waiting_at_the_limit_gets_a_new_sandbox_when_the_busy_one_dies() -> None:
    backend = FakeBackend()
    pool = make_pool(backend, function_spec(max_concurrency=1, timeout_s=0.05))
    first = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"1")))
    await settle()
    sandbox = await pool.sandbox_at("10.0.0.2")
    assert sandbox is not None
    poll = asyncio.create_task(pool.next_invocation(sandbox))  # takes it, never answers
    await settle()
    second = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"2")))
    await settle()  # it waits: the one sandbox the function may have is busy

    assert (await first).error_type == TIMEOUT_ERROR_TYPE  # that sandbox is retired
    answering = asyncio.create_task(runtime(pool, "10.0.0.3", lambda p: p + b"!"))

    assert (await asyncio.wait_for(second, 5)).payload == b"2!"
    assert len(backend.started) == 2
    poll.cancel()
    await stop_all(answering)
    await pool.close()


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


async def test_a_runtime_polling_again_before_answering_is_refused_and_keeps_its_call() -> None:
    pool = make_pool(FakeBackend(), function_spec())
    call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"x")))
    await settle()
    sandbox = await pool.sandbox_at("10.0.0.2")
    assert sandbox is not None
    held = await pool.next_invocation(sandbox)

    with pytest.raises(InvalidRequestId, match="not answered"):
        await asyncio.wait_for(pool.next_invocation(sandbox), timeout=1)

    pool.respond(sandbox, held.request_id, b'"done"')
    assert (await call).payload == b'"done"'
    await pool.close()


async def test_a_caller_is_answered_even_if_its_deadline_timer_is_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("edgelambda.pool.ANSWER_SLACK_S", 0.05)
    pool = make_pool(
        FakeBackend(), function_spec(timeout_s=0.05), queue_wait_s=0.05, init_timeout_s=0.05
    )
    call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"x")))
    await settle()
    sandbox = await pool.sandbox_at("10.0.0.2")
    assert sandbox is not None
    await pool.next_invocation(sandbox)

    sandbox.disarm()  # a bug loses the deadline: the caller must still be answered

    result = await asyncio.wait_for(call, timeout=5)
    assert result.error_type == TIMEOUT_ERROR_TYPE
    await pool.close()


async def test_waiting_payloads_share_one_memory_budget() -> None:
    pool = make_pool(FakeBackend(), function_spec(max_concurrency=1), queued_payload_mb=1)
    half_mb = b"x" * (512 * 1024)
    first = asyncio.create_task(pool.invoke("fn", Invocation(payload=half_mb)))
    second = asyncio.create_task(pool.invoke("fn", Invocation(payload=half_mb)))
    await settle()

    with pytest.raises(TooManyRequests, match="waiting payloads"):
        await pool.invoke("fn", Invocation(payload=b"{}"))  # the budget is full

    runner = asyncio.create_task(runtime(pool, "10.0.0.2", lambda p: b"ok"))
    assert [r.payload for r in await asyncio.gather(first, second)] == [b"ok", b"ok"]
    assert (await pool.invoke("fn", Invocation(payload=half_mb))).payload == b"ok"  # room again
    await stop_all(runner)
    await pool.close()


async def test_a_runtime_gone_after_its_poll_was_refused_is_forgotten_quietly() -> None:
    # The sandbox is retired (its poll fails) and, before the Runtime API hears of it, the
    # runtime's connection drops: nothing to hand back, nothing raised.
    pool = make_pool(FakeBackend(), function_spec())
    call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"x")))
    await settle()
    sandbox = await pool.sandbox_at("10.0.0.2")
    assert sandbox is not None
    pool.respond(sandbox, (await pool.next_invocation(sandbox)).request_id, b'"done"')
    await call
    poll = pool.poll(sandbox)

    pool.recycle("fn", reason="code changed")  # retires the idle sandbox: its poll fails
    assert poll.done()
    assert isinstance(poll.exception(), SandboxRetired)
    pool.abandon_poll(sandbox, poll)

    assert sandbox.poll is None
    await pool.close()


async def test_removing_idle_sandboxes_leaves_busy_ones_and_min_warm() -> None:
    backend, clock = FakeBackend(), Clock()
    pool = make_pool(backend, function_spec(max_concurrency=3, min_warm=2), clock)
    calls = [asyncio.create_task(pool.invoke("fn", Invocation(payload=b"x"))) for _ in range(3)]
    await settle()
    sandboxes = [await pool.sandbox_at(f"10.0.0.{n}") for n in (2, 3, 4)]
    held = [await pool.next_invocation(s) for s in sandboxes if s is not None]
    idle = []
    for sandbox, invocation in zip(sandboxes[1:], held[1:], strict=True):  # c2, then c3, idle
        assert sandbox is not None
        pool.respond(sandbox, invocation.request_id, b"done")
        idle.append(asyncio.create_task(pool.next_invocation(sandbox)))
        await settle()
        clock.now_s += 1
    assert pool.by_state() == {"busy": 1, "ready": 2}

    removed = pool.remove_idle("fn")
    await settle()

    assert removed == 1  # the busy one and the last used stay running: min_warm is 2
    assert pool.by_state() == {"busy": 1, "ready": 1}
    assert backend.removed == ["c2"]  # the one idle longest
    with pytest.raises(RouteNotFound):
        pool.remove_idle("nope")
    await stop_all(*calls, *idle)
    await pool.close()
