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
import itertools
import time
from collections.abc import Awaitable, Callable

import structlog

from edgelambda.async_events import DeadLetter, DeadLetterRetention, QueuedEvent, RetryPolicy
from edgelambda.backoff import backoff_s
from edgelambda.errors import EventNotInFlight, EventStoreError
from edgelambda.event_queue import EventQueue
from edgelambda.tasks import LoopRegistry, TaskSet, start_loop

log = structlog.get_logger(__name__)


RunEvent = Callable[[QueuedEvent], Awaitable[str | None]]

# Pauses between attempts to store an event's outcome while the store refuses writes (a full
# disk): short first, then every 10 s until there is room or the worker closes.
STORE_RETRY_DELAYS_S = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0)


class EventWorker:
    """One background loop that claims due events and runs up to ``concurrency`` at a time.

    ``run`` returns None on success or the function's error; an exception from it is a failure
    too. The loop sleeps until the next event is due, at most ``poll_interval_s`` (the CLI may
    replay into the file from another process), and wakes early on :meth:`notify`; each turn
    also buries expired events and drops dead letters beyond ``retention``.

    Nothing stops the loop but :meth:`close`: an error is logged and the next turn comes. An
    outcome the store refuses (a full disk) is stored again after ``store_retry_delays_s``
    until it is, rather than left ``running`` (retrying it, not running the event again, keeps
    a succeeded event from a second run). After any store error the next turn queues again
    the running events no task holds: a claim may have committed though SQLite reported it
    failed.
    """

    def __init__(
        self,
        queue: EventQueue,
        run: RunEvent,
        *,
        policy: RetryPolicy | None = None,
        retention: DeadLetterRetention | None = None,
        concurrency: int = 4,
        poll_interval_s: float = 1.0,
        drain_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        store_retry_delays_s: tuple[float, ...] = STORE_RETRY_DELAYS_S,
    ) -> None:
        self._queue = queue
        self._run = run
        self._policy = policy or RetryPolicy()
        self._retention = retention or DeadLetterRetention()
        self._store_retry_delays_s = store_retry_delays_s
        self._held: set[str] = set()  # ids of the events claimed and not yet settled
        self._is_reconcile_due = False
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
            timeout_s = await self._poll()
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that arrives as
            # the wake-up does, and close() would wait on this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._wake.wait()

    async def _poll(self) -> float:
        """One turn of the loop, which outlives any error in it; how long to sleep."""
        try:
            return await self._dispatch_due()
        except EventStoreError as exc:
            # The store may recover (disk space freed); the loop must outlive the error.
            log.error("event queue poll failed", error=str(exc))
        except Exception:
            log.exception("event worker turn failed")
        self._is_reconcile_due = True
        return self._poll_interval_s

    async def _dispatch_due(self) -> float:
        """Tidy the store, start the due events that fit, and return how long to sleep."""
        now_s = self._clock()
        await self._tidy(now_s)
        free = self._concurrency - len(self._running)
        for event in await self._queue.claim(now_s, free):
            self._held.add(event.id)
            self._running.spawn(self._handle(event))
        if len(self._running) >= self._concurrency:
            return self._poll_interval_s  # a finishing event wakes the loop
        next_due_s = await self._queue.next_due_s()
        if next_due_s is None:
            return self._poll_interval_s
        return min(max(next_due_s - self._clock(), 0.0), self._poll_interval_s)

    async def _tidy(self, now_s: float) -> None:
        """Requeue orphans after an error, bury expired events, drop old dead letters."""
        if self._is_reconcile_due:
            requeued = await self._queue.requeue_orphans(self._held, now_s)
            self._is_reconcile_due = False
            if requeued:
                log.warning("running events no worker held requeued", count=requeued)
        expired = await self._queue.expire(now_s, self._policy.max_age_s)
        if expired:
            log.warning("expired events dead-lettered", count=expired)
        dropped = await self._queue.prune_dead_letters(now_s, self._retention)
        if dropped:
            log.warning(
                "dead letters dropped",
                count=dropped,
                max_age_s=self._retention.max_age_s,
                max_count=self._retention.max_count,
            )

    async def _handle(self, event: QueuedEvent) -> None:
        """Run one claimed event and record the outcome; a free slot wakes the loop."""
        try:
            error = await self._attempt(event)
            await self._settle_until_stored(event, error)
        finally:
            self._held.discard(event.id)
            self._wake.set()

    async def _settle_until_stored(self, event: QueuedEvent, error: str | None) -> None:
        """Store the outcome, again and again while the store refuses it."""
        for failures in itertools.count():
            try:
                await self._settle(event, error)
                return
            except EventNotInFlight:
                if failures == 0:
                    raise  # a bug: nothing else settles a held event
                # An earlier attempt was stored though SQLite reported it failed.
                log.info("event outcome found stored", event_id=event.id)
                return
            except EventStoreError as exc:
                log.error(
                    "event outcome not stored; retrying",
                    event_id=event.id,
                    attempt=failures + 1,
                    error=str(exc),
                )
            except Exception:
                # A bug: let the next turn queue the event again rather than hold it running.
                log.exception("event outcome not stored", event_id=event.id)
                self._is_reconcile_due = True
                return
            await asyncio.sleep(backoff_s(self._store_retry_delays_s, failures + 1))

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
