"""The durable queue behind ``Event`` (asynchronous) invocations, and the worker that drains it.

An event is acknowledged to its caller (202) only after :meth:`EventQueue.enqueue` has
committed it to one SQLite file (WAL, ``synchronous=FULL``), so a gateway killed at any moment
loses nothing. Each event is ``queued`` until due, ``running`` while a worker holds it, and
deleted once it succeeds. A failure is retried on AWS's schedule (two retries, about 1 then 2
minutes) until it succeeds, runs out of attempts or grows older than the maximum event age;
then it moves to the dead-letter table, where the CLI can list and replay it.

Delivery is at-least-once: an event that was ``running`` when the previous process died is
queued again by :meth:`EventQueue.recover` and may run a second time, as in AWS.

Wiring, in order::

    queue = await EventQueue.open(data_dir / QUEUE_FILE)
    await queue.recover(now_s=time.time())   # before any worker runs: one owner per file
    worker = EventWorker(queue, run)
    worker.start()
    ...                                      # enqueue, then worker.notify()
    await worker.close()
    await queue.close()

The policy (:func:`decide_after_failure`) is pure; the queue only stores and moves rows, with
every time passed in, so tests never sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import structlog

from edgelambda.errors import EventNotInFlight, EventStoreError
from edgelambda.tasks import TaskSet, backoff_s, start_loop

log = structlog.get_logger(__name__)

QUEUE_FILE = "events.sqlite3"  # the one file under the data dir
BUSY_TIMEOUT_S = 5.0  # the CLI may hold the write lock briefly while it replays dead letters

# -- values and policy ----------------------------------------------------------------------


@dataclass(frozen=True)
class QueuedEvent:
    """An event waiting for, or holding, its next attempt. ``attempts`` counts the attempts
    started so far, this one included once claimed."""

    id: str
    function: str
    payload: bytes
    trace_id: str | None
    attempts: int
    enqueued_at_s: float
    next_attempt_at_s: float
    last_error: str | None


class DeadLetterReason(enum.StrEnum):
    """Why an event stopped being retried."""

    RETRIES_EXHAUSTED = "retries_exhausted"
    EVENT_TOO_OLD = "event_too_old"


@dataclass(frozen=True)
class DeadLetteredEvent:
    """An event in the dead-letter store, kept until it is replayed."""

    id: str
    function: str
    payload: bytes
    trace_id: str | None
    attempts: int
    enqueued_at_s: float
    dead_at_s: float
    reason: DeadLetterReason
    last_error: str | None


@dataclass(frozen=True)
class RetryPolicy:
    """AWS's asynchronous retry behaviour: one delay per retry, and a maximum event age
    (``MaximumEventAgeInSeconds``, 6 h by default)."""

    delays_s: tuple[float, ...] = (60.0, 120.0)
    max_age_s: float = 21600.0

    @property
    def max_attempts(self) -> int:
        """The first attempt plus one per retry delay."""
        return len(self.delays_s) + 1


@dataclass(frozen=True)
class Retry:
    """Run the event again at ``at_s``."""

    at_s: float


@dataclass(frozen=True)
class DeadLetter:
    """Give up on the event and keep it in the dead-letter store."""

    reason: DeadLetterReason


Decision = Retry | DeadLetter


def decide_after_failure(event: QueuedEvent, policy: RetryPolicy, now_s: float) -> Decision:
    """What to do with an event whose attempt number ``event.attempts`` just failed.

    A retry that would start after the event's maximum age is not scheduled at all: AWS would
    discard the event before running it, so it goes to the dead letters now.
    """
    if event.attempts >= policy.max_attempts:
        return DeadLetter(DeadLetterReason.RETRIES_EXHAUSTED)
    at_s = now_s + backoff_s(policy.delays_s, event.attempts)
    if at_s - event.enqueued_at_s > policy.max_age_s:
        return DeadLetter(DeadLetterReason.EVENT_TOO_OLD)
    return Retry(at_s)


# -- errors ---------------------------------------------------------------------------------


# -- SQL ------------------------------------------------------------------------------------

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    # FULL syncs the WAL at every commit: an acknowledged event survives power loss too, not
    # only a process crash, at the cost of one fsync per enqueue.
    "PRAGMA synchronous=FULL",
)

SCHEMA = (
    # seq keeps enqueue order among events due at the same time; AUTOINCREMENT so a deleted
    # event's seq is never reused by a later one.
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        function TEXT NOT NULL,
        payload BLOB NOT NULL,
        trace_id TEXT,
        attempts INTEGER NOT NULL,
        enqueued_at_s REAL NOT NULL,
        next_attempt_at_s REAL NOT NULL,
        last_error TEXT,
        state TEXT NOT NULL CHECK (state IN ('queued', 'running'))
    )""",
    "CREATE INDEX IF NOT EXISTS events_due ON events (state, next_attempt_at_s, seq)",
    """CREATE TABLE IF NOT EXISTS dead_letters (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        function TEXT NOT NULL,
        payload BLOB NOT NULL,
        trace_id TEXT,
        attempts INTEGER NOT NULL,
        enqueued_at_s REAL NOT NULL,
        dead_at_s REAL NOT NULL,
        reason TEXT NOT NULL,
        last_error TEXT
    )""",
)

EVENT_COLUMNS = (
    "id, function, payload, trace_id, attempts, enqueued_at_s, next_attempt_at_s, last_error"
)
DEAD_COLUMNS = (
    "id, function, payload, trace_id, attempts, enqueued_at_s, dead_at_s, reason, last_error"
)

BEGIN = "BEGIN IMMEDIATE"  # take the write lock up front: no upgrade deadlock with the CLI

INSERT_EVENT = f"""INSERT INTO events ({EVENT_COLUMNS}, state)
    VALUES (?, ?, ?, ?, 0, ?, ?, NULL, 'queued')"""

# One statement, so no other claimer can take the same rows; RETURNING does not promise an
# order, so seq comes back to sort by.
CLAIM_DUE = f"""UPDATE events SET state = 'running', attempts = attempts + 1
    WHERE seq IN (
        SELECT seq FROM events WHERE state = 'queued' AND next_attempt_at_s <= ?
        ORDER BY next_attempt_at_s, seq LIMIT ?)
    RETURNING next_attempt_at_s, seq, {EVENT_COLUMNS}"""

SELECT_RUNNING = f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ? AND state = 'running'"
DELETE_RUNNING = "DELETE FROM events WHERE id = ? AND state = 'running'"
REQUEUE_FAILED = """UPDATE events SET state = 'queued', next_attempt_at_s = ?, last_error = ?
    WHERE id = ? AND state = 'running'"""
# Keeps attempts: the interrupted run counted, so a crash loop still ends in the dead letters.
REQUEUE_RUNNING = (
    "UPDATE events SET state = 'queued', next_attempt_at_s = ? WHERE state = 'running'"
)

BURY_FAILED = f"""INSERT INTO dead_letters ({DEAD_COLUMNS})
    SELECT id, function, payload, trace_id, attempts, enqueued_at_s, ?, ?, ?
    FROM events WHERE id = ? AND state = 'running'"""
BURY_EXPIRED = f"""INSERT INTO dead_letters ({DEAD_COLUMNS})
    SELECT id, function, payload, trace_id, attempts, enqueued_at_s, ?, ?, last_error
    FROM events WHERE state = 'queued' AND enqueued_at_s < ? ORDER BY seq"""
DELETE_EXPIRED = "DELETE FROM events WHERE state = 'queued' AND enqueued_at_s < ?"

SELECT_DEAD = f"SELECT {DEAD_COLUMNS} FROM dead_letters ORDER BY seq"
# A replayed event starts afresh: its age restarts, or the maximum age would bury it again.
REPLAY_DEAD = f"""INSERT INTO events ({EVENT_COLUMNS}, state)
    SELECT id, function, payload, trace_id, 0, ?2, ?2, NULL, 'queued'
    FROM dead_letters WHERE ?1 IS NULL OR id = ?1 ORDER BY seq"""
DELETE_DEAD = "DELETE FROM dead_letters WHERE ?1 IS NULL OR id = ?1"

COUNT_EVENTS = "SELECT COUNT(*) FROM events"
NEXT_DUE = "SELECT MIN(next_attempt_at_s) FROM events WHERE state = 'queued'"


def _queued_event(row: Sequence[Any]) -> QueuedEvent:
    return QueuedEvent(*row)


def _dead_lettered_event(row: Sequence[Any]) -> DeadLetteredEvent:
    event_id, function, payload, trace_id, attempts, enqueued_at_s, dead_at_s, reason, error = row
    return DeadLetteredEvent(
        event_id,
        function,
        payload,
        trace_id,
        attempts,
        enqueued_at_s,
        dead_at_s,
        DeadLetterReason(reason),
        error,
    )


# -- the store ------------------------------------------------------------------------------


class EventQueue:
    """The durable event store on one SQLite connection; open with :meth:`open`."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        # One connection runs one transaction at a time; the lock keeps a coroutine's
        # statements from landing inside another coroutine's BEGIN ... COMMIT.
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> EventQueue:
        """Open the store at ``path``, creating the file, its directory and the tables if
        needed."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: no implicit transactions, every write says BEGIN itself.
            db = await aiosqlite.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
        except sqlite3.Error as exc:
            raise EventStoreError(f"cannot open event store {path}: {exc}") from exc
        queue = cls(db, path)
        try:
            await queue._prepare()
        except BaseException:
            await db.close()
            raise
        return queue

    async def close(self) -> None:
        """Close the connection; committed events stay in the file."""
        await self._db.close()

    async def _prepare(self) -> None:
        async with self._guard():
            for pragma in PRAGMAS:
                await self._db.execute(pragma)
        async with self._transaction() as db:
            for statement in SCHEMA:
                await db.execute(statement)

    @contextlib.asynccontextmanager
    async def _guard(self) -> AsyncIterator[aiosqlite.Connection]:
        """Serialise access and turn SQLite errors into :class:`EventStoreError`."""
        async with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise EventStoreError(f"event store {self.path}: {exc}") from exc

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction: committed on success, rolled back on any exit by error or
        cancellation.

        A cancelled await does not stop its statement: BEGIN or COMMIT still runs on the
        connection's thread. So both sit inside the ``try``, and the rollback, queued behind
        them on that thread, ends whatever they left open (it is a no-op if nothing is).
        """
        async with self._guard() as db:
            try:
                await db.execute(BEGIN)
                yield db
                await db.commit()
            except BaseException:
                await db.rollback()
                raise

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        async with self._guard() as db:
            return list(await db.execute_fetchall(sql, params))

    async def enqueue(
        self, function: str, payload: bytes, *, trace_id: str | None, now_s: float
    ) -> str:
        """Store a new event, due now, and return its id once it is committed (the point
        after which the caller may answer 202)."""
        event_id = str(uuid.uuid4())
        async with self._transaction() as db:
            await db.execute(INSERT_EVENT, (event_id, function, payload, trace_id, now_s, now_s))
        return event_id

    async def claim(self, now_s: float, limit: int) -> list[QueuedEvent]:
        """Mark up to ``limit`` due events running, one more attempt each, and return them
        oldest due first (ties in enqueue order)."""
        if limit <= 0:
            return []
        async with self._transaction() as db:
            rows = list(await db.execute_fetchall(CLAIM_DUE, (now_s, limit)))
        rows.sort(key=lambda row: (row[0], row[1]))
        return [_queued_event(row[2:]) for row in rows]

    async def ack(self, event_id: str) -> None:
        """The running event succeeded: forget it."""
        async with self._transaction() as db:
            cursor = await db.execute(DELETE_RUNNING, (event_id,))
            if cursor.rowcount == 0:
                raise EventNotInFlight(f"event {event_id} is not running")

    async def fail(
        self, event_id: str, error: str, *, now_s: float, policy: RetryPolicy
    ) -> Decision:
        """The running event failed with ``error``: queue it for its retry, or move it to the
        dead letters, as :func:`decide_after_failure` says; return that decision."""
        async with self._transaction() as db:
            rows = list(await db.execute_fetchall(SELECT_RUNNING, (event_id,)))
            if not rows:
                raise EventNotInFlight(f"event {event_id} is not running")
            decision = decide_after_failure(_queued_event(rows[0]), policy, now_s)
            if isinstance(decision, Retry):
                await db.execute(REQUEUE_FAILED, (decision.at_s, error, event_id))
            else:
                await db.execute(BURY_FAILED, (now_s, decision.reason.value, error, event_id))
                await db.execute(DELETE_RUNNING, (event_id,))
        return decision

    async def expire(self, now_s: float, max_age_s: float) -> int:
        """Move queued events older than ``max_age_s`` to the dead letters, as AWS discards
        them unrun (say, after a long outage); return how many."""
        cutoff_s = now_s - max_age_s
        async with self._transaction() as db:
            cursor = await db.execute(
                BURY_EXPIRED, (now_s, DeadLetterReason.EVENT_TOO_OLD.value, cutoff_s)
            )
            await db.execute(DELETE_EXPIRED, (cutoff_s,))
        return cursor.rowcount

    async def recover(self, now_s: float) -> int:
        """At start-up, before any worker runs: queue again, due now, every event the previous
        process left running (it died mid-attempt); return how many."""
        async with self._transaction() as db:
            cursor = await db.execute(REQUEUE_RUNNING, (now_s,))
        if cursor.rowcount:
            log.warning("requeued interrupted events", count=cursor.rowcount)
        return cursor.rowcount

    async def dead_letters(self) -> list[DeadLetteredEvent]:
        """Every dead-lettered event, oldest first."""
        return [_dead_lettered_event(row) for row in await self._fetchall(SELECT_DEAD)]

    async def replay(self, event_id: str | None = None, *, now_s: float) -> int:
        """Queue one dead letter (or all, when ``event_id`` is None) again, due now, with its
        attempts and age reset; return how many moved (0 for an unknown id)."""
        async with self._transaction() as db:
            cursor = await db.execute(REPLAY_DEAD, (event_id, now_s))
            await db.execute(DELETE_DEAD, (event_id,))
        return cursor.rowcount

    async def depth(self) -> int:
        """Events queued or running."""
        rows = await self._fetchall(COUNT_EVENTS)
        return int(rows[0][0])

    async def next_due_s(self) -> float | None:
        """When the earliest queued event is due, or None when nothing is queued."""
        rows = await self._fetchall(NEXT_DUE)
        due = rows[0][0]
        return None if due is None else float(due)


# -- the worker -----------------------------------------------------------------------------

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

    def start(self) -> None:
        """Start the loop."""
        if self._loop_task is None:
            self._loop_task = start_loop(self._loop(), "event worker")

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
