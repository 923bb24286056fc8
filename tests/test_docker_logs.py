"""Following a container's output (edgelambda.docker_logs): the pure parts, and the follower
against a stand-in for the engine's log endpoint that stalls a follow as Docker 20.10's
json-file follower does at a rotation (the real one is in test_pool_docker)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiodocker
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from edgelambda import docker_logs
from edgelambda.docker_logs import (
    ContainerOutput,
    Cursor,
    LogVolume,
    is_due,
    split_frames,
)
from edgelambda.logs import OutputLine

T0 = 1_790_000_000.0
CONTAINER = "c0ffee" * 10


def stamp(time_s: float) -> str:
    whole = int(time_s)
    nanos = round((time_s - whole) * 1e9)
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def frame(stream: str, data: str) -> bytes:
    body = data.encode()
    return struct.pack(">BxxxL", 1 if stream == "stdout" else 2, len(body)) + body


# -- pure parts ------------------------------------------------------------------------------


def out(time_s: float, text: str, stream: str = "stdout") -> OutputLine:
    return OutputLine(time_s, stream, text)


def test_a_cursor_takes_each_line_once_even_at_the_same_instant() -> None:
    cursor = Cursor(T0)
    assert cursor.advance(out(T0, "a"))
    assert cursor.advance(out(T0, "b"))  # same nanosecond, another line
    assert cursor.advance(out(T0, "a", "stderr"))  # the same text on the other stream
    assert not cursor.advance(out(T0, "a"))  # a follow anew from this second repeats it
    assert not cursor.advance(out(T0 - 1, "older"))
    assert cursor.advance(out(T0 + 0.5, "a"))  # a later line with the same text is new
    assert not cursor.advance(out(T0, "b"))
    assert cursor.since_param() == str(int(T0))


def test_the_volume_counts_what_the_json_file_stores_per_line() -> None:
    volume = LogVolume()
    volume.add("x" * 100)
    volume.add("é")  # bytes, not characters
    assert volume.bytes == 100 + 2 + 2 * docker_logs.LINE_OVERHEAD_BYTES


def test_frames_are_split_by_their_header_and_unknown_types_skipped() -> None:
    body = frame("stdout", "one\n") + frame("stderr", "two\n") + b"\x03\0\0\0\0\0\0\x01x"
    assert split_frames(body) == [("stdout", "one\n"), ("stderr", "two\n")]
    assert split_frames(frame("stdout", "cut")[:-1]) == [("stdout", "cu")]
    assert split_frames(b"") == []


def test_a_watched_log_is_checked_soon_after_output_and_rarely_when_quiet() -> None:
    assert is_due(arrived=True, quiet_s=docker_logs.ACTIVE_CHECK_S)
    assert not is_due(arrived=False, quiet_s=docker_logs.ACTIVE_CHECK_S)
    assert is_due(arrived=False, quiet_s=docker_logs.IDLE_CHECK_S)


# -- the follower against a stand-in engine --------------------------------------------------


@dataclass
class FakeLogEngine:
    """The log endpoint of one container: its file as (time, stream, text) lines. A follow
    sends what is there and then each new line, except after ``stall_after`` lines in all
    (counted over the file), where it sends nothing more and never ends, like Docker 20.10's
    json-file follow at a rotation. Stopping the container ends every follow."""

    lines: list[tuple[float, str, str]] = field(default_factory=list)
    stall_after: int | None = None  # stalls follows opened before the file had this many
    stops_stalled: bool = True  # whether a stalled follow ends when the container stops
    follows: int = 0
    checks: int = 0
    requests: int = 0  # to the log endpoint
    follow_opened: asyncio.Event = field(default_factory=asyncio.Event)
    fail_follows: bool = False
    grew: asyncio.Condition = field(default_factory=asyncio.Condition)
    stopped: bool = False

    async def write(self, stream: str, text: str, time_s: float | None = None) -> None:
        last = self.lines[-1][0] if self.lines else T0
        self.lines.append((time_s if time_s is not None else last + 0.001, stream, text))
        async with self.grew:
            self.grew.notify_all()

    async def stop(self) -> None:
        self.stopped = True
        async with self.grew:
            self.grew.notify_all()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/version"):
            return web.json_response({"ApiVersion": "1.41", "Version": "20.10.24"})
        assert request.path.endswith(f"/containers/{CONTAINER}/logs"), request.path
        self.requests += 1
        query = request.query
        is_follow = query.get("follow") == "1"
        if self.fail_follows and is_follow:
            return web.json_response({"message": "engine is going away"}, status=500)
        response = web.StreamResponse()
        response.content_type = "application/vnd.docker.raw-stream"
        await response.prepare(request)
        streams = {s for s in ("stdout", "stderr") if query.get(s) == "1"}
        if "tail" in query:
            self.checks += 1
            await self._send(response, self.lines[-int(query["tail"]) :], streams, 0)
        elif is_follow:
            await self._follow(response, streams, float(query["since"]))
        else:
            await self._send(response, self.lines, streams, float(query["since"]))
        return response

    async def _follow(self, response: web.StreamResponse, streams: set[str], since: float) -> None:
        self.follows += 1
        self.follow_opened.set()
        opened_at = len(self.lines)
        sent = 0
        while True:
            stall = self.stall_after is not None and opened_at < self.stall_after
            limit = min(len(self.lines), self.stall_after or 0) if stall else len(self.lines)
            await self._send(response, self.lines[sent:limit], streams, since)
            sent = max(sent, limit)
            if self.stopped and (self.stops_stalled or not stall):
                return
            async with self.grew:
                await self.grew.wait()

    @staticmethod
    async def _send(
        response: web.StreamResponse,
        lines: list[tuple[float, str, str]],
        streams: set[str],
        since: float,
    ) -> None:
        for time_s, stream, text in lines:
            if stream in streams and time_s >= since:
                await response.write(frame(stream, f"{stamp(time_s)} {text}\n"))


@pytest.fixture
async def engine() -> AsyncIterator[tuple[FakeLogEngine, aiodocker.Docker]]:
    fake = FakeLogEngine()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    docker = aiodocker.Docker(url=str(server.make_url("")))
    try:
        yield fake, docker
    finally:
        await docker.close()
        await server.close()


@pytest.fixture
def quick_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker_logs, "ACTIVE_CHECK_S", 0.05)
    monkeypatch.setattr(docker_logs, "IDLE_CHECK_S", 0.2)
    monkeypatch.setattr(docker_logs, "CONFIRM_S", 0.05)


class Reader:
    """Reads a follower's lines in a task; ``take(n)`` waits (bounded) for the next ``n``."""

    def __init__(self, output: ContainerOutput) -> None:
        self.lines: asyncio.Queue[OutputLine] = asyncio.Queue()
        self.task = asyncio.create_task(self._read(output))

    async def _read(self, output: ContainerOutput) -> None:
        async for line in output.lines():
            self.lines.put_nowait(line)

    async def take(self, count: int, timeout_s: float = 5) -> list[OutputLine]:
        async with asyncio.timeout(timeout_s):
            return [await self.lines.get() for _ in range(count)]

    async def end(self) -> None:
        """The output ends (bounded), with nothing more than what was taken."""
        await asyncio.wait_for(self.task, 5)
        assert self.lines.empty(), self.lines.get_nowait()


async def follow(
    fake: FakeLogEngine, docker: aiodocker.Docker, watch_after_bytes: int = 0
) -> Reader:
    output = ContainerOutput(
        docker, CONTAINER, T0, volume=LogVolume(), watch_after_bytes=watch_after_bytes
    )
    reader = Reader(output)
    await asyncio.wait_for(fake.follow_opened.wait(), 5)
    return reader


def texts(lines: list[OutputLine]) -> list[str]:
    return [line.text for line in lines]


@pytest.mark.usefixtures("quick_checks")
async def test_a_stalled_follow_is_followed_anew_and_repeats_nothing(
    engine: tuple[FakeLogEngine, aiodocker.Docker],
) -> None:
    fake, docker = engine
    fake.stall_after = 3
    reader = await follow(fake, docker)
    for n in range(6):
        await fake.write("stdout", f"line {n}")
    await fake.write("stderr", "err 0")
    seen = await reader.take(7)
    await fake.stop()
    await reader.end()
    assert texts(seen) == [*(f"line {n}" for n in range(6)), "err 0"]
    assert [line.stream for line in seen] == ["stdout"] * 6 + ["stderr"]
    assert fake.follows == 2  # the first, stalled, and one anew


@pytest.mark.usefixtures("quick_checks")
async def test_output_after_a_quiet_spell_that_stalls_is_found_by_the_idle_check(
    engine: tuple[FakeLogEngine, aiodocker.Docker],
) -> None:
    fake, docker = engine
    reader = await follow(fake, docker)
    await fake.write("stdout", "before")
    assert texts(await reader.take(1)) == ["before"]
    await asyncio.sleep(0.2)  # quiet: the check after output found nothing behind
    fake.stall_after = 1  # the next line stalls the follow, as a rotation it starts would
    await fake.write("stdout", "after a quiet spell")
    assert texts(await reader.take(1, timeout_s=3)) == ["after a quiet spell"]
    await fake.stop()
    await reader.end()


async def test_a_follow_stalled_up_to_the_end_is_read_once_more(
    engine: tuple[FakeLogEngine, aiodocker.Docker],
) -> None:
    fake, docker = engine
    fake.stall_after = 1
    # Never watched: the read after the end alone recovers the lines.
    reader = await follow(fake, docker, watch_after_bytes=10**9)
    for n in range(3):
        await fake.write("stdout", f"line {n}")
    assert texts(await reader.take(1)) == ["line 0"]
    await fake.stop()
    assert texts(await reader.take(2)) == ["line 1", "line 2"]
    await reader.end()
    assert fake.checks == 0


async def test_a_small_log_is_never_checked(
    engine: tuple[FakeLogEngine, aiodocker.Docker], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docker_logs, "ACTIVE_CHECK_S", 0.01)
    fake, docker = engine
    reader = await follow(fake, docker, watch_after_bytes=10_000)
    await fake.write("stdout", "short")
    assert texts(await reader.take(1)) == ["short"]
    await asyncio.sleep(0.1)
    await fake.stop()
    await reader.end()
    assert fake.checks == 0


async def test_an_engine_error_ends_the_output_without_a_last_read(
    engine: tuple[FakeLogEngine, aiodocker.Docker],
) -> None:
    fake, docker = engine
    fake.fail_follows = True
    await fake.write("stdout", "in the file")
    output = ContainerOutput(docker, CONTAINER, T0, volume=LogVolume(), watch_after_bytes=0)
    reader = Reader(output)
    await reader.end()
    assert fake.requests == 1  # the failed follow, and no read after it
