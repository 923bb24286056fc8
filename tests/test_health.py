"""``/health`` without an engine: healthy while every background loop runs, 503 naming a
loop that died."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgelambda.errors import EventStoreError
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
    assert await response.json() == {
        "status": "healthy",
        "functions": 1,
        "containers": {},
        "events": {"queued": 0, "dead_letters": 0},
    }


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
        "events": {"queued": 0, "dead_letters": 0},
        "dead_loops": {"event worker": "RuntimeError: the queue's database is gone"},
    }


async def test_health_counts_queued_and_dead_lettered_events(gateway: GatewayFactory) -> None:
    box = await gateway()
    events = box.client.app[SERVER_KEY]._events
    assert events is not None
    later_s = time.time() + 3600  # none is due: the worker leaves them queued
    for created_s in (later_s, later_s + 600, later_s + 600):
        await events.enqueue("fn", b"{}", trace_id=None, now_s=created_s)
    assert await events.expire(now_s=later_s + 100, max_age_s=60) == 1  # the oldest

    response = await box.client.get("/health")

    assert (await response.json())["events"] == {"queued": 2, "dead_letters": 1}


async def test_health_says_why_the_event_store_cannot_answer(
    gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = await gateway()

    async def full_disk() -> dict[str, int]:
        raise EventStoreError("event store events.db: database or disk is full")

    monkeypatch.setattr(box.client.app[SERVER_KEY], "event_counts", full_disk)
    response = await box.client.get("/health")

    assert response.status == 200  # every loop still runs
    assert (await response.json())["events"] == {
        "error": "event store events.db: database or disk is full"
    }


async def test_health_does_not_wait_on_a_busy_event_store(
    gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = await gateway()

    async def locked() -> dict[str, int]:
        await asyncio.sleep(30)  # another writer holds SQLite's lock
        return {}

    monkeypatch.setattr(box.client.app[SERVER_KEY], "event_counts", locked)
    started = time.monotonic()
    response = await box.client.get("/health")

    assert time.monotonic() - started < 5
    assert (await response.json())["events"] == {
        "error": "the event store did not answer within 1 s"
    }
