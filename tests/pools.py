"""A pool over the fake backend, and fake runtimes driving it: shared by the tests of the
pool and of the sandboxes' lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from edgelambda.config import Settings
from edgelambda.logs import RecordingSink
from edgelambda.pool import Pool
from edgelambda.routing import FunctionSpec
from tests.fakes import Clock, FakeBackend


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
