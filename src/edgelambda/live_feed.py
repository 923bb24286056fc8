"""The console's live feed: one document, rendered once per tick while anyone listens, sent
to every listener only when it changed (the same bytes to all); each listener is one open
``text/event-stream`` response (HTML Living Standard, "Server-sent events")."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog

from edgelambda.backoff import backoff_s
from edgelambda.tasks import LoopRegistry, start_loop

log = structlog.get_logger(__name__)

RETRY_DELAYS_S = (1.0, 5.0, 30.0)  # after a render failed, then twice in a row, then more


def sse_message(document: bytes) -> bytes:
    """One server-sent event carrying ``document`` (one line of JSON), or for none a comment
    line (a line starting with a colon), which keeps a quiet stream open through proxies."""
    return b"data: " + document + b"\n\n" if document else b": alive\n\n"


class Listener:
    """One open console's place in the feed: the newest document it has not sent yet."""

    def __init__(self) -> None:
        self._latest: bytes | None = None
        self._is_closed = False
        self._wake = asyncio.Event()

    def put(self, document: bytes) -> None:
        self._latest = document  # a slow console skips to the newest document
        self._wake.set()

    def close(self) -> None:
        self._is_closed = True
        self._wake.set()

    async def next(self, wait_s: float) -> bytes | None:
        """The next document; b"" after ``wait_s`` without one; None once closed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await self._wake.wait()
        self._wake.clear()
        if self._is_closed:
            return None
        document, self._latest = self._latest, None
        return document or b""


class LiveFeed:
    """Renders the live document once per ``interval_s`` while anyone listens and hands it to
    every :class:`Listener` when it changed. A render that fails is logged and tried again
    (after a back-off); the feed itself only ends with :meth:`close`."""

    def __init__(self, render: Callable[[], Awaitable[bytes]], interval_s: float) -> None:
        self._render = render
        self._interval_s = interval_s
        self._listeners: set[Listener] = set()
        self._someone = asyncio.Event()
        self._last: bytes | None = None
        # One render and publish at a time: a slower render finishing later must not
        # overwrite a newer document.
        self._rendering = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._is_closed = False

    def start(self, loops: LoopRegistry | None = None) -> None:
        self._task = start_loop(self._run(), "console feed", loops)

    async def close(self) -> None:
        """End every open stream (and any opened from now on), then the loop."""
        self._is_closed = True
        for listener in list(self._listeners):
            listener.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[Listener]:
        """A listener that starts with the current document. Raises what rendering raises,
        before anything is sent."""
        listener = Listener()
        async with self._rendering:
            document = await self._render()
            self._publish(document)  # to those already listening, if it is news to them
        listener.put(document)
        if self._is_closed:
            listener.close()
        self._listeners.add(listener)
        self._someone.set()
        try:
            yield listener
        finally:
            self._listeners.discard(listener)
            if not self._listeners:
                self._someone.clear()
                self._last = None

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._someone.wait()
            try:
                async with self._rendering:
                    self._publish(await self._render())
            except Exception:
                failures += 1
                log.exception("console feed: rendering failed", failures=failures)
                await asyncio.sleep(backoff_s(RETRY_DELAYS_S, failures))
                continue
            failures = 0
            await asyncio.sleep(self._interval_s)

    def _publish(self, document: bytes) -> None:
        if document != self._last:
            self._last = document
            for listener in self._listeners:
                listener.put(document)
