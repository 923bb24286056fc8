"""The worker that drains the durable event queue: one background loop that claims due
events, runs them and records each outcome.

Wiring, in order::

    queue = await EventQueue.open(data_dir / QUEUE_FILE)
    await queue.recover(now_s=time.time())   # before any worker runs: one owner per file
    worker = EventWorker(queue, run)
    worker.start()
    ...                                      # enqueue, then worker.notify()
    await worker.close()
    await queue.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import structlog

from edgelambda.async_events import DeadLetter, QueuedEvent, RetryPolicy
from edgelambda.errors import EventStoreError
from edgelambda.event_queue import EventQueue
from edgelambda.tasks import LoopRegistry, TaskSet, start_loop

log = structlog.get_logger(__name__)


RunEvent = Callable[[QueuedEvent], Awaitable[str | None]]


class EventWorker:
    """One background loop that claims due events and runs up to ``concurrency`` at a time.

    ``run`` returns None on success or the function's error; an exception from it is a failure
    too. The loop sleeps until the next event is due, at most ``poll_interval_s`` (the CLI may
    replay into the file from another process), and wakes early on :meth:`notify`.
    """

    def __init__(
        self,
        queue: EventQueue,
        run: RunEvent,
        *,
        policy: RetryPolicy | None = None,
        concurrency: int = 4,
        poll_interval_s: float = 1.0,
        drain_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue = queue
        self._run = run
        self._policy = policy or RetryPolicy()
        self._concurrency = concurrency
        self._poll_interval_s = poll_interval_s
        self._drain_timeout_s = drain_timeout_s
        self._clock = clock
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._running = TaskSet()

    @property
    def in_flight(self) -> int:
        """Events being run now."""
        return len(self._running)

    def start(self, loops: LoopRegistry | None = None) -> None:
        """Start the loop."""
        if self._loop_task is None:
            self._loop_task = start_loop(self._loop(), "event worker", loops)

    def notify(self) -> None:
        """Look for due events now (call after an enqueue)."""
        self._wake.set()

    async def close(self) -> None:
        """Stop claiming, let running events finish until ``drain_timeout_s``, then cancel the
        rest; those stay ``running`` in the store and the next start-up's ``recover`` queues
        them again."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        if self._running:
            await asyncio.wait(self._running.running(), timeout=self._drain_timeout_s)
        unfinished = self._running.running()
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            # Cleared before looking, so a notify() that arrives meanwhile is not lost.
            self._wake.clear()
            try:
                timeout_s = await self._dispatch_due()
            except EventStoreError as exc:
                # The store may recover (disk space freed); the loop must outlive the error.
                log.error("event queue poll failed", error=str(exc))
                timeout_s = self._poll_interval_s
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that arrives as
            # the wake-up does, and close() would wait on this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._wake.wait()

    async def _dispatch_due(self) -> float:
        """Bury expired events, start the due ones that fit, and return how long to sleep."""
        now_s = self._clock()
        expired = await self._queue.expire(now_s, self._policy.max_age_s)
        if expired:
            log.warning("expired events dead-lettered", count=expired)
        free = self._concurrency - len(self._running)
        for event in await self._queue.claim(now_s, free):
            self._running.spawn(self._handle(event))
        if len(self._running) >= self._concurrency:
            return self._poll_interval_s  # a finishing event wakes the loop
        next_due_s = await self._queue.next_due_s()
        if next_due_s is None:
            return self._poll_interval_s
        return min(max(next_due_s - self._clock(), 0.0), self._poll_interval_s)

    async def _handle(self, event: QueuedEvent) -> None:
        """Run one claimed event and record the outcome; a free slot wakes the loop."""
        error = await self._attempt(event)
        try:
            await self._settle(event, error)
        except Exception:
            # The event stays running in the store; the next start-up's recover() requeues it.
            log.exception("event outcome not stored", event_id=event.id)
        finally:
            self._wake.set()

    async def _attempt(self, event: QueuedEvent) -> str | None:
        try:
            return await self._run(event)
        except Exception as exc:
            # A crash of the runner is the event's failure, retried like a function error.
            log.exception("event run raised", event_id=event.id, function=event.function)
            return f"{type(exc).__name__}: {exc}"

    async def _settle(self, event: QueuedEvent, error: str | None) -> None:
        if error is None:
            await self._queue.ack(event.id)
            return
        decision = await self._queue.fail(event.id, error, now_s=self._clock(), policy=self._policy)
        if isinstance(decision, DeadLetter):
            log.warning(
                "event dead-lettered",
                event_id=event.id,
                function=event.function,
                attempts=event.attempts,
                reason=decision.reason.value,
                error=error,
            )
        else:
            log.info(
                "event retry scheduled",
                event_id=event.id,
                function=event.function,
                attempts=event.attempts,
                at_s=decision.at_s,
            )
