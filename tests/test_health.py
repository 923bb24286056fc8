"""``/health`` without an engine: healthy while every background loop runs, 503 naming a
loop that died."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgelambda.gateway import SERVER_KEY
from edgelambda.tasks import start_loop
from tests.gateway_box import GatewayFactory, open_gateways


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    async with open_gateways(tmp_path) as start:
        yield start


async def test_health_is_healthy_while_every_loop_runs(gateway: GatewayFactory) -> None:
    box = await gateway()

    response = await box.client.get("/health")

    assert response.status == 200
    assert await response.json() == {"status": "healthy", "functions": 1, "containers": {}}


async def test_the_gateways_loops_are_watched(gateway: GatewayFactory) -> None:
    box = await gateway()

    names = box.client.app[SERVER_KEY].loops.names()

    assert {"idle reaper", "exit watcher", "event worker", "scheduler"} <= set(names)


async def test_health_is_503_naming_a_loop_that_died(gateway: GatewayFactory) -> None:
    box = await gateway()

    async def broken() -> None:
        raise RuntimeError("the queue's database is gone")

    died = start_loop(broken(), "event worker", box.client.app[SERVER_KEY].loops)
    await asyncio.gather(died, return_exceptions=True)
    response = await box.client.get("/health")

    assert response.status == 503
    assert await response.json() == {
        "status": "unhealthy",
        "functions": 1,
        "containers": {},
        "dead_loops": {"event worker": "RuntimeError: the queue's database is gone"},
    }
