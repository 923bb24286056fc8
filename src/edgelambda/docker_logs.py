"""A container's output through the Docker Engine's log API: followed, and resumed when the
engine's follow stalls.

Docker 20.10's json-file follower can stall for good at a rotation: the file keeps growing,
the stream sends nothing more and never ends (4 of 8 runs here of a container printing 3 MB
into 1 MB files; moby/moby#37646 and #23913 report the same symptom). A fresh follow from
the last line delivered reads on, rotated files included. So once a container has printed
enough to rotate its log (half a file, estimated from the lines seen), its output is
watched: every :data:`ACTIVE_CHECK_S` while lines arrive and every :data:`IDLE_CHECK_S`
otherwise, the engine is asked for the file's newest line; when the follow has not
delivered it :data:`CONFIRM_S` later, the output is followed anew from its last line. When
the follow ends (the container stopped) the file is read once more from the last line, so a
stall just before the end loses nothing either.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiodocker
import aiohttp
import structlog

from edgelambda.logs import OutputLine, OutputStream, parse_docker_line

log = structlog.get_logger(__name__)

NO_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_read=None)  # streams last as containers do
ACTIVE_CHECK_S = 2.0
IDLE_CHECK_S = 30.0
CONFIRM_S = 1.0
CHECK_TIMEOUT_S = 5.0
# A json-file line is {"log":"<text>\n","stream":"stdout","time":"<RFC 3339, ns>"} and a
# newline: about 70 bytes beside the text (more where JSON escapes it).
LINE_OVERHEAD_BYTES = 70
# The engine's multiplexed stream: 1 byte stream type (1 stdout, 2 stderr), 3 zero bytes, a
# big-endian 4-byte length, then that many bytes (Engine API, "Attach to a container").
FRAME_HEADER = struct.Struct(">BxxxL")
FRAME_STREAMS: dict[int, str] = {1: OutputStream.STDOUT, 2: OutputStream.STDERR}
ENGINE_ERRORS = (aiodocker.DockerError, aiohttp.ClientError, ValueError)


@dataclass
class Cursor:
    """Where delivery stands: the newest line's time and the lines delivered at exactly that
    time, so output followed anew from there repeats nothing."""

    time_s: float
    at_time: set[tuple[str, str]] = field(default_factory=set)  # (stream, text)

    def advance(self, line: OutputLine) -> bool:
        """Whether ``line`` is new (and, if so, record it as delivered)."""
        key = (line.stream, line.text)
        if line.time_s < self.time_s or (line.time_s == self.time_s and key in self.at_time):
            return False
        if line.time_s > self.time_s:
            self.time_s, self.at_time = line.time_s, set()
        self.at_time.add(key)
        return True

    def since_param(self) -> str:
        # The engine takes whole seconds here; what is older is dropped by advance().
        return str(int(self.time_s))


@dataclass
class LogVolume:
    """Roughly how much a container has written to its log file, across its runs."""

    bytes: int = 0

    def add(self, text: str) -> None:
        self.bytes += len(text.encode("utf-8", "replace")) + LINE_OVERHEAD_BYTES


def split_frames(body: bytes) -> list[tuple[str, str]]:
    """A whole multiplexed response -> (stream, text) per frame; unknown types skipped."""
    frames = []
    offset = 0
    while offset + FRAME_HEADER.size <= len(body):
        kind, length = FRAME_HEADER.unpack_from(body, offset)
        offset += FRAME_HEADER.size
        data = body[offset : offset + length]
        offset += length
        if kind in FRAME_STREAMS:
            frames.append((FRAME_STREAMS[kind], data.decode("utf-8", "replace")))
    return frames


async def read_frame(content: aiohttp.StreamReader) -> tuple[int, bytes] | None:
    """The next frame of a multiplexed stream as (type, data); None at its end."""
    try:
        kind, length = FRAME_HEADER.unpack(await content.readexactly(FRAME_HEADER.size))
        return kind, await content.readexactly(length)
    except asyncio.IncompleteReadError:
        return None


def is_due(*, arrived: bool, quiet_s: float) -> bool:
    """Whether a watched container's log is checked now: soon after output, else rarely."""
    return arrived or quiet_s >= IDLE_CHECK_S


class ContainerOutput:
    """One container's output from ``since_s`` on, until it stops: one follow of both
    streams, told apart by the multiplexed stream's frame headers."""

    def __init__(
        self,
        docker: aiodocker.Docker,
        container_id: str,
        since_s: float,
        *,
        volume: LogVolume,
        watch_after_bytes: int,
    ) -> None:
        self._docker = docker
        self._id = container_id
        self._cursor = Cursor(since_s)
        self._volume = volume
        self._watch_after_bytes = watch_after_bytes
        self._lines: asyncio.Queue[OutputLine | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._arrived = False  # a line came since the last check

    async def lines(self) -> AsyncIterator[OutputLine]:
        self._reader = asyncio.create_task(self._read())
        self._watch_if_needed()
        try:
            while (line := await self._lines.get()) is not None:
                yield line
        finally:
            tasks = [task for task in (self._reader, self._watchdog) if task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self) -> None:
        """Follow the output; once it ends, read what the file holds past its last line."""
        if await self._stream(follow=True):
            await self._stream(follow=False)
        self._lines.put_nowait(None)

    async def _stream(self, *, follow: bool) -> bool:
        """Deliver the output's new lines; False when the engine broke off (an error)."""
        params: dict[str, Any] = {
            "follow": follow,
            "timestamps": True,
            "since": self._cursor.since_param(),
            "stdout": True,
            "stderr": True,
        }
        try:
            # aiodocker's log() leaves the connection open when the engine breaks the stream
            # off (an engine restart), so the response is closed here, whatever happens.
            async with self._docker._query(
                f"containers/{self._id}/logs", params=params, timeout=NO_TIMEOUT
            ) as response:
                try:
                    while (frame := await read_frame(response.content)) is not None:
                        self._take(*frame)
                finally:
                    response.close()
        except ENGINE_ERRORS as exc:
            log.warning("output stream ended", container=self._id[:12], error=str(exc))
            return False
        return True

    def _take(self, kind: int, data: bytes) -> None:
        stream = FRAME_STREAMS.get(kind)
        if stream is None or not data:
            return
        time_s, text = parse_docker_line(data.decode("utf-8", "replace"))
        line = OutputLine(time_s, stream, text)
        if not self._cursor.advance(line):
            return
        self._volume.add(text)
        self._arrived = True
        self._lines.put_nowait(line)
        self._watch_if_needed()

    def _watch_if_needed(self) -> None:
        if self._watchdog is None and self._volume.bytes >= self._watch_after_bytes:
            self._watchdog = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        quiet_s = 0.0
        while True:
            await asyncio.sleep(ACTIVE_CHECK_S)
            quiet_s += ACTIVE_CHECK_S
            if not is_due(arrived=self._arrived, quiet_s=quiet_s):
                continue
            self._arrived, quiet_s = False, 0.0
            newest_s = await self._newest_line_s()
            if newest_s is not None and await self._is_stalled(newest_s):
                await self._follow_anew()

    async def _newest_line_s(self) -> float | None:
        """The time of the newest line in the container's log file."""
        params: dict[str, Any] = {"stdout": True, "stderr": True, "timestamps": True, "tail": 1}
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                async with self._docker._query(
                    f"containers/{self._id}/logs", params=params
                ) as response:
                    body = await response.read()
        except (*ENGINE_ERRORS, TimeoutError):
            return None  # the follow itself reports what is wrong with the engine
        frames = split_frames(body)
        return parse_docker_line(frames[-1][1])[0] if frames else None

    async def _is_stalled(self, newest_s: float) -> bool:
        """Whether the line stamped ``newest_s`` is still not delivered a moment later."""
        if self._cursor.time_s >= newest_s:
            return False
        await asyncio.sleep(CONFIRM_S)
        return self._cursor.time_s < newest_s

    async def _follow_anew(self) -> None:
        reader = self._reader
        assert reader is not None
        if reader.done():
            return  # it ended meanwhile, after reading the file once more
        log.warning("output stream stalled; following it anew", container=self._id[:12])
        reader.cancel()
        await asyncio.wait({reader})
        self._reader = asyncio.create_task(self._read())
