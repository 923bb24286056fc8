"""`edgelambda serve` as a real process: leftovers of a killed run are removed at start-up,
and SIGTERM drains in-flight work before removing every container."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable

import aiodocker
import aiohttp
import pytest

from tests.conftest import Server, Starter, function_code, routing_text, stack_containers

pytestmark = pytest.mark.docker


LIFECYCLE = routing_text(
    {
        "fn": {
            "handler": "app.handler",
            "code": function_code("lifecycle"),
            "max_concurrency": 5,
        }
    },
    [{"path": "/fn", "method": "GET", "function": "fn", "auth": "none"}],
)


@pytest.fixture
def serve(serve_factory: Starter) -> Callable[[], Awaitable[Server]]:
    async def start() -> Server:
        return await serve_factory(LIFECYCLE)

    return start


async def _get(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


async def test_a_restart_removes_what_a_killed_gateway_left(
    serve: Callable[[], Awaitable[Server]], docker: aiodocker.Docker
) -> None:
    first = await serve()
    status, body = await _get(f"{first.url}/fn")
    assert status == 200
    left_behind = body["container"]
    first.process.kill()  # no clean-up at all
    await first.process.wait()
    all_ids = await _all_container_ids(docker)
    assert any(cid.startswith(str(left_behind)) for cid in all_ids)

    second = await serve()

    all_ids = await _all_container_ids(docker)
    assert not any(cid.startswith(str(left_behind)) for cid in all_ids)
    status, body = await _get(f"{second.url}/fn")
    assert status == 200
    assert body["container"] != left_behind
    second.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(second.process.wait(), timeout=20) == 0
    assert await stack_containers(docker, second.stack) == []


async def test_sigterm_drains_in_flight_work_and_removes_every_container(
    serve: Callable[[], Awaitable[Server]], docker: aiodocker.Docker
) -> None:
    server = await serve()
    calls = [asyncio.create_task(_get(f"{server.url}/fn?action=sleep&s=1")) for _ in range(5)]
    await asyncio.sleep(0.5)  # all five are in flight (cold starts included)

    server.process.send_signal(signal.SIGTERM)
    results = await asyncio.gather(*calls)

    assert [status for status, _ in results] == [200] * 5
    assert await asyncio.wait_for(server.process.wait(), timeout=20) == 0
    assert len({body["container"] for _, body in results}) == 5
    assert await stack_containers(docker, server.stack) == []


async def _all_container_ids(docker: aiodocker.Docker) -> list[str]:
    return [c.id for c in await docker.containers.list(all=True, filters=json.dumps({}))]
