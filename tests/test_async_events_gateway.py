"""Event invocations through the gateway's Invoke API, without an engine: a 202 only once the
event is stored, AWS's errors when it cannot be (a full disk, a function's queue at its
bound), and a start-up that survives a corrupt store."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientResponse

from edgelambda.event_queue import QUEUE_FILE, EventQueue
from tests.faulty_sqlite import Disk
from tests.gateway_box import Gateway, GatewayFactory, open_gateways

INVOKE = "/2015-03-31/functions/fn/invocations"
EVENT_HEADERS = {"x-api-key": "dev-api-key-change-in-production", "X-Amz-Invocation-Type": "Event"}


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    async with open_gateways(tmp_path) as factory:
        yield factory


async def post_event(gateway: Gateway, n: int) -> ClientResponse:
    response = await gateway.client.post(INVOKE, data=json.dumps({"n": n}), headers=EVENT_HEADERS)
    await response.read()
    return response


def corrupt(path: Path) -> None:
    path.write_bytes(b"not a database at all" * 100)


def set_aside(data_dir: Path) -> list[Path]:
    return list(data_dir.glob(f"{QUEUE_FILE}.corrupt-*"))


def stored(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])


async def test_beyond_the_bound_an_event_is_too_many_requests(
    start: GatewayFactory, tmp_path: Path
) -> None:
    gateway = await start(event_queue_size=2)  # the runtime never answers: events stay

    statuses = [(await post_event(gateway, n)).status for n in range(2)]
    refused = await post_event(gateway, 2)

    assert statuses == [202, 202]
    assert refused.status == 429
    assert refused.headers["x-amzn-ErrorType"] == "TooManyRequestsException"
    assert "Retry-After" in refused.headers
    body = await refused.json()
    assert body["Type"] == "User"
    assert "fn" in body["message"]
    assert stored(tmp_path / QUEUE_FILE) == 2


async def test_a_full_disk_is_a_service_error_never_a_202(
    start: GatewayFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = Disk()
    real_open = EventQueue.open

    async def open_on_disk(path: Path, **kwargs: object) -> EventQueue:
        return await real_open(path, connection_factory=disk.connection_class(), **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(EventQueue, "open", open_on_disk)
    gateway = await start()
    disk.fill_now()

    refused = await post_event(gateway, 0)

    assert refused.status == 500
    assert refused.headers["x-amzn-ErrorType"] == "ServiceException"
    assert stored(tmp_path / QUEUE_FILE) == 0

    disk.room()
    assert (await post_event(gateway, 1)).status == 202
    assert stored(tmp_path / QUEUE_FILE) == 1


async def test_a_corrupt_store_is_set_aside_and_the_gateway_starts(
    start: GatewayFactory, tmp_path: Path
) -> None:
    corrupt(tmp_path / QUEUE_FILE)

    gateway = await start()

    assert (await post_event(gateway, 0)).status == 202
    assert len(set_aside(tmp_path)) == 1
