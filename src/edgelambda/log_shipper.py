"""Shipping log records to VictoriaLogs through its JSON-lines ingestion API.

``emit`` only appends to a bounded buffer, so no invocation ever waits for the log store;
one background task sends batches, keeps them while the store is down (retrying with
back-off), and drops the oldest records, counted, once the buffer is full."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass

import aiohttp
import structlog

from edgelambda.backoff import backoff_s
from edgelambda.logs import LogRecord, encode_jsonline
from edgelambda.tasks import LoopRegistry, start_loop

log = structlog.get_logger(__name__)

INGEST_PATH = "/insert/jsonline"
INGEST_PARAMS = {
    "_stream_fields": "function,container_name",
    "_msg_field": "_msg",
    "_time_field": "_time",
}
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass(frozen=True)
class ShipperSettings:
    url: str  # VictoriaLogs base URL, e.g. http://victorialogs:9428
    batch_size: int = 500
    flush_interval_s: float = 1.0
    capacity: int = 20_000  # records held while the store is unreachable
    close_timeout_s: float = 3.0


class VictoriaLogsSink:
    """A :class:`~edgelambda.logs.LogSink` that ships to VictoriaLogs; ``start``/``close``."""

    def __init__(self, settings: ShipperSettings) -> None:
        self._settings = settings
        self._buffer: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._failures = 0
        self.dropped = 0  # records lost to a full buffer

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def emit(self, record: LogRecord) -> None:
        if len(self._buffer) >= self._settings.capacity:
            self._buffer.popleft()
            self.dropped += 1
        self._buffer.append(encode_jsonline(record))
        if len(self._buffer) >= self._settings.batch_size:
            self._wake.set()

    def start(self, loops: LoopRegistry | None = None) -> None:
        self._session = aiohttp.ClientSession(timeout=REQUEST_TIMEOUT)
        self._task = start_loop(self._run(), "log shipper", loops)

    async def close(self) -> None:
        """Stop the loop, try once more (bounded) to ship what is left, close the session."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._settings.close_timeout_s):
                await self._flush()
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._pause_s()):
                    await self._wake.wait()
            self._wake.clear()
            await self._flush()

    def _pause_s(self) -> float:
        if self._failures:
            return backoff_s(BACKOFF_S, self._failures)
        return self._settings.flush_interval_s

    async def _flush(self) -> None:
        while self._buffer:
            count = min(len(self._buffer), self._settings.batch_size)
            batch = [self._buffer.popleft() for _ in range(count)]
            if not await self._send(b"\n".join(batch) + b"\n"):
                self._put_back(batch)
                return

    def _put_back(self, batch: list[bytes]) -> None:
        """Return an unsent batch to the front; what no longer fits (the oldest) is dropped."""
        room = max(0, self._settings.capacity - len(self._buffer))
        kept = batch[len(batch) - room :] if room < len(batch) else batch
        self.dropped += len(batch) - len(kept)
        self._buffer.extendleft(reversed(kept))

    async def _send(self, batch: bytes) -> bool:
        assert self._session is not None
        url = self._settings.url.rstrip("/") + INGEST_PATH
        try:
            async with self._session.post(
                url,
                params=INGEST_PARAMS,
                data=batch,
                headers={"Content-Type": "application/stream+json"},
            ) as response:
                response.raise_for_status()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._failures += 1
            if self._failures == 1:  # once per outage, not once per retry
                log.warning("log store unreachable; buffering", url=url, error=str(exc))
            return False
        if self._failures:
            log.info("log store reachable again", url=url, dropped=self.dropped)
        self._failures = 0
        return True
