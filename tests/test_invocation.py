"""One call's values: an invocation settled once, Lambda's error documents, and the bounded
stream of a streamed response. No engine, no sleeping beyond a few ms."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from edgelambda.errors import StreamBroken
from edgelambda.invocation import (
    Invocation,
    InvocationResult,
    ResponseStream,
    error_result,
    exit_result,
    timeout_result,
)

# -- Invocation ----------------------------------------------------------------------------


async def test_an_invocation_is_settled_once_and_later_outcomes_are_ignored() -> None:
    invocation = Invocation(payload=b"{}")
    first = InvocationResult(b"first")

    invocation.settle(first)
    invocation.settle(InvocationResult(b"second"))
    invocation.settle(RuntimeError("too late"))

    assert invocation.result.result() is first


async def test_an_invocation_settled_with_an_exception_raises_it_to_its_caller() -> None:
    invocation = Invocation(payload=b"{}")
    error = RuntimeError("sandbox gone")

    invocation.settle(error)
    invocation.settle(InvocationResult(b"too late"))

    with pytest.raises(RuntimeError, match="sandbox gone"):
        await invocation.result


async def test_leaving_the_queue_cancels_the_queue_wait_limit() -> None:
    invocation = Invocation(payload=b"{}")
    expiry = asyncio.get_running_loop().call_later(60, invocation.settle, TimeoutError())
    invocation.expiry = expiry

    invocation.stop_waiting()
    invocation.stop_waiting()  # again: nothing left to cancel

    assert expiry.cancelled()
    assert invocation.expiry is None


async def test_settling_cancels_the_queue_wait_limit_too() -> None:
    invocation = Invocation(payload=b"{}")
    expiry = asyncio.get_running_loop().call_later(60, invocation.settle, TimeoutError())
    invocation.expiry = expiry

    invocation.settle(InvocationResult(b"ok"))

    assert expiry.cancelled()
    assert invocation.expiry is None


async def test_each_invocation_has_its_own_request_id_and_a_log_that_carries_it() -> None:
    first = Invocation(payload=b"{}", trace_id="Root=1-5e1b4151-5ac6c58f3a3c3b5f2a1d0c9b")
    second = Invocation(payload=b"{}")

    assert first.request_id != second.request_id
    assert str(uuid.UUID(first.request_id)) == first.request_id  # Lambda's ids are UUIDs
    assert (first.log.request_id, first.log.trace_id) == (first.request_id, first.trace_id)
    assert (second.log.request_id, second.log.trace_id) == (second.request_id, None)
    assert first.log is not second.log


async def test_an_invocation_given_a_request_id_logs_under_that_id() -> None:
    invocation = Invocation(payload=b"{}", request_id="req-1")

    assert invocation.log.request_id == "req-1"


# -- results and Lambda's error documents ----------------------------------------------------


def test_a_result_is_an_error_only_with_an_error_type() -> None:
    assert not InvocationResult(b'{"ok": true}').is_error
    assert InvocationResult(b"{}", error_type="Function.Handled").is_error


def test_an_error_result_is_lambda_s_error_document() -> None:
    result = error_result("Runtime.ImportModuleError", "No module named 'app'")

    assert result.error_type == "Runtime.ImportModuleError"
    assert json.loads(result.payload) == {
        "errorType": "Runtime.ImportModuleError",
        "errorMessage": "No module named 'app'",
    }
    assert result.stream is None


@pytest.mark.parametrize(
    ("timeout_s", "message"),
    [
        (3, "Task timed out after 3.00 seconds"),
        (0.5, "Task timed out after 0.50 seconds"),
        (900.0, "Task timed out after 900.00 seconds"),
    ],
)
def test_a_timeout_is_lambda_s_sandbox_timed_out_error(timeout_s: float, message: str) -> None:
    result = timeout_result(timeout_s)

    assert result.error_type == "Sandbox.Timedout"
    assert json.loads(result.payload) == {"errorType": "Sandbox.Timedout", "errorMessage": message}


@pytest.mark.parametrize(
    ("exit_code", "is_oom", "error_type", "message"),
    [
        (1, False, "Runtime.ExitError", "Runtime exited with error: exit status 1"),
        # Killed, but not for memory (SIGKILL from outside): still an exit status.
        (137, False, "Runtime.ExitError", "Runtime exited with error: exit status 137"),
        (137, True, "Runtime.OutOfMemory", "Runtime exited with error: signal: killed"),
    ],
)
def test_a_runtime_that_died_is_an_exit_or_out_of_memory_error(
    exit_code: int, is_oom: bool, error_type: str, message: str
) -> None:
    result = exit_result(exit_code, is_oom)

    assert result.is_error
    assert result.error_type == error_type
    assert json.loads(result.payload) == {"errorType": error_type, "errorMessage": message}


# -- ResponseStream ------------------------------------------------------------------------


async def test_a_stream_gives_its_chunks_in_order_then_ends() -> None:
    stream = ResponseStream("text/plain")
    for chunk in (b"one", b"two", b"three"):
        await stream.put(chunk)
    await stream.end()

    assert stream.content_type == "text/plain"
    assert [chunk async for chunk in stream.chunks()] == [b"one", b"two", b"three"]


async def test_a_stream_broken_off_raises_after_its_chunks() -> None:
    stream = ResponseStream("application/octet-stream")
    await stream.put(b"partial")
    await stream.end("runtime connection lost")
    chunks = stream.chunks()

    assert await anext(chunks) == b"partial"
    with pytest.raises(StreamBroken, match="runtime connection lost"):
        await anext(chunks)


async def test_a_full_stream_makes_the_runtime_wait_for_the_caller() -> None:
    stream = ResponseStream("text/plain", max_chunks=2)
    await stream.put(b"a")
    await stream.put(b"b")

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(stream.put(b"c"), timeout=0.01)

    chunks = stream.chunks()
    assert await anext(chunks) == b"a"
    await asyncio.wait_for(stream.put(b"c"), timeout=1)  # one read made room for one chunk
    ending = asyncio.create_task(stream.end())  # the end marker waits for room as well
    assert [chunk async for chunk in chunks] == [b"b", b"c"]
    await ending


async def test_an_abandoned_stream_frees_a_waiting_runtime_and_never_blocks_again() -> None:
    stream = ResponseStream("text/plain", max_chunks=1)
    await stream.put(b"queued")
    waiting = asyncio.create_task(stream.put(b"blocked"))
    await asyncio.sleep(0)
    assert not waiting.done()  # the queue is full and nobody reads

    stream.abandon()

    await asyncio.wait_for(waiting, timeout=1)  # the queued chunk was dropped: room again
    # That late chunk filled the queue again; every later one is dropped, never waited for.
    for n in range(5):
        await asyncio.wait_for(stream.put(b"%d" % n), timeout=0.01)
    await asyncio.wait_for(stream.end("caller gone"), timeout=0.01)
