"""The pool's decisions, driven through a fake container backend and fake runtimes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from edgelambda.config import Settings
from edgelambda.containers import ContainerSpec, StartedContainer
from edgelambda.errors import TooManyRequests
from edgelambda.pool import (
    TIMEOUT_ERROR_TYPE,
    InvalidRequestId,
    Invocation,
    Pool,
    sandboxes_to_start,
)
from edgelambda.routing import FunctionSpec


def _function(max_concurrency: int = 2, timeout_s: float = 30.0) -> FunctionSpec:
    return FunctionSpec(
        name="fn",
        handler="app.handler",
        code_dir=Path("/nonexistent"),
        runtime="python3.12",
        image="fake:1",
        environment={},
        timeout_s=timeout_s,
        memory_mb=128,
        max_concurrency=max_concurrency,
        min_warm=0,
        idle_timeout_s=None,
        schedules=(),
    )


class FakeBackend:
    def __init__(self) -> None:
        self.started: list[ContainerSpec] = []
        self.removed: list[str] = []

    async def network_gateway(self, network: str) -> str:
        return "10.0.0.1"

    async def function_image(self, function: FunctionSpec, base_image: str) -> str:
        return "fake:1"

    async def start(self, spec: ContainerSpec) -> StartedContainer:
        self.started.append(spec)
        number = len(self.started)
        return StartedContainer(id=f"c{number}", address=f"10.0.0.{number + 1}")

    async def remove(self, container_id: str) -> None:
        self.removed.append(container_id)

    async def remove_stack(self, stack: str) -> int:
        return 0


def _pool(backend: FakeBackend, function: FunctionSpec, queue_size: int = 10) -> Pool:
    return Pool(
        functions={function.name: function},
        backend=backend,
        settings=Settings(queue_size=queue_size, shutdown_grace_s=0.1),
        runtime_api="10.0.0.1:9001",
    )


async def _runtime(pool: Pool, address: str, answer: Callable[[bytes], bytes]) -> None:
    """A well-behaved runtime: poll, answer, repeat."""
    sandbox = await pool.sandbox_at(address)
    assert sandbox is not None
    while True:
        invocation = await pool.next_invocation(sandbox)
        pool.respond(sandbox, invocation.request_id, answer(invocation.payload))


@pytest.mark.parametrize(
    ("queued", "starting", "total", "limit", "expected"),
    [
        (5, 0, 0, 2, 2),  # a burst starts no more than the limit
        (1, 0, 0, 4, 1),  # one waiting call, one cold start
        (3, 2, 2, 4, 1),  # two already starting cover two of three
        (2, 2, 2, 4, 0),
        (9, 0, 4, 4, 0),  # at the limit: wait for a free sandbox
        (0, 0, 0, 4, 0),
    ],
)
def test_sandboxes_to_start(
    queued: int, starting: int, total: int, limit: int, expected: int
) -> None:
    count = sandboxes_to_start(queued=queued, starting=starting, total=total, max_concurrency=limit)

    assert count == expected


async def test_a_burst_starts_at_most_max_concurrency_sandboxes() -> None:
    backend = FakeBackend()
    pool = _pool(backend, _function(max_concurrency=2))
    invocations = [Invocation(payload=str(i).encode()) for i in range(5)]
    calls = [asyncio.create_task(pool.invoke("fn", inv)) for inv in invocations]
    await asyncio.sleep(0)  # let the cold starts run
    runtimes = [
        asyncio.create_task(_runtime(pool, f"10.0.0.{n}", lambda p: p + b"!")) for n in (2, 3)
    ]

    results = await asyncio.gather(*calls)

    assert [r.payload for r in results] == [b"0!", b"1!", b"2!", b"3!", b"4!"]
    assert len(backend.started) == 2
    for runtime in runtimes:
        runtime.cancel()
    await asyncio.gather(*runtimes, return_exceptions=True)
    await pool.close()
    assert sorted(backend.removed) == ["c1", "c2"]


async def test_a_full_queue_answers_429() -> None:
    pool = _pool(FakeBackend(), _function(max_concurrency=1), queue_size=1)
    first = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"1")))
    await asyncio.sleep(0)

    with pytest.raises(TooManyRequests):
        await pool.invoke("fn", Invocation(payload=b"2"))

    first.cancel()
    await pool.close()


async def test_an_init_error_fails_the_waiting_call_and_retires_the_sandbox() -> None:
    backend = FakeBackend()
    pool = _pool(backend, _function())
    call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"{}")))
    await asyncio.sleep(0)
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
    pool = _pool(backend, _function(timeout_s=0.05))
    call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"{}")))
    await asyncio.sleep(0)
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
    pool = _pool(backend, _function(max_concurrency=2))
    invocation = Invocation(payload=b"x")
    call = asyncio.create_task(pool.invoke("fn", invocation))
    await asyncio.sleep(0)
    first = await pool.sandbox_at("10.0.0.2")
    assert first is not None

    taken = await pool.next_invocation(first)
    pool.undeliverable(first, taken)  # the runtime's connection broke mid-response
    await asyncio.sleep(0)
    runtime = asyncio.create_task(_runtime(pool, "10.0.0.3", lambda p: p * 2))
    result = await call

    assert result.payload == b"xx"
    assert backend.removed == ["c1"]
    runtime.cancel()
    await asyncio.gather(runtime, return_exceptions=True)
    await pool.close()


async def test_answers_for_another_invocation_are_refused() -> None:
    pool = _pool(FakeBackend(), _function())
    call = asyncio.create_task(pool.invoke("fn", Invocation(payload=b"x")))
    await asyncio.sleep(0)
    sandbox = await pool.sandbox_at("10.0.0.2")
    assert sandbox is not None
    invocation = await pool.next_invocation(sandbox)

    with pytest.raises(InvalidRequestId):
        pool.respond(sandbox, "not-" + invocation.request_id, b"forged")
    pool.respond(sandbox, invocation.request_id, b"real")

    assert (await call).payload == b"real"
    await pool.close()
