"""Shipping to a recording stand-in of VictoriaLogs' /insert/jsonline, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from edgelambda.log_shipper import ShipperSettings, VictoriaLogsSink
from edgelambda.logs import LogRecord


class Recorder:
    """Stores what /insert/jsonline receives; ``is_down`` makes it answer 503."""

    def __init__(self) -> None:
        self.lines: list[dict[str, object]] = []
        self.params: list[dict[str, str]] = []
        self.is_down = False

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/insert/jsonline", self.insert)
        return app

    async def insert(self, request: web.Request) -> web.Response:
        if self.is_down:
            return web.Response(status=503)
        self.params.append(dict(request.query))
        body = await request.read()
        self.lines += [json.loads(line) for line in body.splitlines() if line.strip()]
        return web.Response(status=204)


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    recording = Recorder()
    server = TestServer(recording.app(), host="127.0.0.1")
    await server.start_server()
    yield recording, str(server.make_url("")).rstrip("/")
    await server.close()


def record(n: int) -> LogRecord:
    return LogRecord(time_s=1.0 + n, message=f"line {n}", function="fn", container="c",
                     stream="stdout")  # fmt: skip


async def wait_for(condition: Callable[[], bool], timeout_s: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_records_arrive_in_batches_with_the_ingestion_parameters(
    recorder: tuple[Recorder, str],
) -> None:
    recording, url = recorder
    sink = VictoriaLogsSink(ShipperSettings(url=url, batch_size=10, flush_interval_s=0.05))
    sink.start()

    for n in range(25):
        sink.emit(record(n))
    await wait_for(lambda: len(recording.lines) == 25)
    await sink.close()

    assert [line["_msg"] for line in recording.lines] == [f"line {n}" for n in range(25)]
    assert recording.params[0] == {
        "_stream_fields": "function,container_name",
        "_msg_field": "_msg",
        "_time_field": "_time",
    }


async def test_an_outage_buffers_drops_the_oldest_beyond_capacity_and_resumes(
    recorder: tuple[Recorder, str],
) -> None:
    recording, url = recorder
    sink = VictoriaLogsSink(
        ShipperSettings(url=url, batch_size=5, flush_interval_s=0.02, capacity=20)
    )
    sink.start()
    recording.is_down = True

    for n in range(30):
        sink.emit(record(n))
    await asyncio.sleep(0.2)
    assert sink.buffered <= 20
    assert sink.dropped == 10
    recording.is_down = False
    await wait_for(lambda: len(recording.lines) == 20, timeout_s=10)
    await sink.close()

    assert [line["_msg"] for line in recording.lines] == [f"line {n}" for n in range(10, 30)]


async def test_an_unreachable_store_keeps_the_buffer_bounded() -> None:
    # Nothing listens on this port: emit stays instantaneous and bounded.
    sink = VictoriaLogsSink(ShipperSettings(url="http://127.0.0.1:9", capacity=100))
    sink.start()

    for n in range(10_000):
        sink.emit(record(n))  # synchronous: it cannot wait for the network
    await sink.close()

    assert sink.buffered == 100
    assert sink.dropped == 9_900
