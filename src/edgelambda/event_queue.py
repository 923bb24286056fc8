"""The durable queue behind ``Event`` (asynchronous) invocations: one SQLite file (WAL,
``synchronous=FULL``) holding the queued and running events and the dead letters.

:meth:`EventQueue.enqueue` returns once the event is committed, the point after which the
caller may answer 202; a write that fails (a full disk) raises :class:`EventStoreError` and
leaves no row behind. Every time is passed in; what to do after a failure is
:func:`~edgelambda.async_events.decide_after_failure`'s decision. One process owns the file
at a time (the CLI may briefly replay dead letters into it); at start-up,
:meth:`EventQueue.recover` queues again what the previous process left running, and the
gateway sets a corrupt file aside rather than stop (``set_aside_corrupt``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
import structlog

from edgelambda.async_events import (
    DeadLetteredEvent,
    DeadLetterReason,
    DeadLetterRetention,
    Decision,
    QueuedEvent,
    Retry,
    RetryPolicy,
    decide_after_failure,
)
from edgelambda.errors import EventNotInFlight, EventQueueFull, EventStoreError

log = structlog.get_logger(__name__)

QUEUE_FILE = "events.sqlite3"  # the one file under the data dir
BUSY_TIMEOUT_S = 5.0  # the CLI may hold the write lock briefly while it replays dead letters
# The primary result codes of a damaged file (https://www.sqlite.org/rescode.html): set aside
# at start-up. A full disk (SQLITE_FULL) or an I/O error is not damage and never moves it.
CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
# Files SQLite keeps beside the database in WAL mode; the -wal one holds committed
# transactions not yet copied back, so it moves with the file it belongs to, and a fresh
# file never meets an old log.
SIDE_FILES = ("-wal", "-shm")

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
    "CREATE INDEX IF NOT EXISTS events_function ON events (function)",  # the per-function bound
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
    "CREATE INDEX IF NOT EXISTS dead_letters_age ON dead_letters (dead_at_s)",
    "CREATE INDEX IF NOT EXISTS dead_letters_function ON dead_letters (function, seq)",
)
# quick_check: integrity_check's O(N) subset (no index contents), enough to find damaged
# pages before the store is trusted (https://www.sqlite.org/pragma.html#pragma_quick_check).
QUICK_CHECK = "PRAGMA quick_check(1)"

EVENT_COLUMNS = (
    "id, function, payload, trace_id, attempts, enqueued_at_s, next_attempt_at_s, last_error"
)
DEAD_COLUMNS = (
    "id, function, payload, trace_id, attempts, enqueued_at_s, dead_at_s, reason, last_error"
)

BEGIN = "BEGIN IMMEDIATE"  # take the write lock up front: no upgrade deadlock with the CLI

COUNT_FUNCTION = "SELECT COUNT(*) FROM events WHERE function = ?"
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
# The same for running events no worker holds: a claim whose commit landed though SQLite
# reported an error (SQLITE_IOERR after the WAL write), or an outcome given up on.
REQUEUE_ORPHANS = """UPDATE events SET state = 'queued', next_attempt_at_s = ?1
    WHERE state = 'running' AND id NOT IN (SELECT value FROM json_each(?2))"""

BURY_FAILED = f"""INSERT INTO dead_letters ({DEAD_COLUMNS})
    SELECT id, function, payload, trace_id, attempts, enqueued_at_s, ?, ?, ?
    FROM events WHERE id = ? AND state = 'running'"""
BURY_EXPIRED = f"""INSERT INTO dead_letters ({DEAD_COLUMNS})
    SELECT id, function, payload, trace_id, attempts, enqueued_at_s, ?, ?, last_error
    FROM events WHERE state = 'queued' AND enqueued_at_s < ? ORDER BY seq"""
DELETE_EXPIRED = "DELETE FROM events WHERE state = 'queued' AND enqueued_at_s < ?"

# Dead letters are chosen by id, by function or all (:class:`DeadLetterFilter`), oldest first,
# at most :limit (-1: no limit); each filter is one of these fixed texts, never user text.
DEAD_FILTERS = {"id": "id = :id", "function": "function = :function", "all": "1"}
SELECT_DEAD = f"SELECT {DEAD_COLUMNS} FROM dead_letters WHERE {{where}} ORDER BY seq LIMIT :limit"
# A replayed event starts afresh: its age restarts, or the maximum age would bury it again.
CHOSEN_DEAD = "SELECT seq FROM dead_letters WHERE {where} ORDER BY seq LIMIT :limit"
REPLAY_DEAD = f"""INSERT INTO events ({EVENT_COLUMNS}, state)
    SELECT id, function, payload, trace_id, 0, :now, :now, NULL, 'queued'
    FROM dead_letters WHERE seq IN ({CHOSEN_DEAD}) ORDER BY seq"""
DELETE_DEAD = f"DELETE FROM dead_letters WHERE seq IN ({CHOSEN_DEAD})"

DROP_OLD_DEAD = "DELETE FROM dead_letters WHERE dead_at_s < ?"
# Everything older than the max_count newest (seq is insertion order); nothing when fewer.
DROP_EXCESS_DEAD = """DELETE FROM dead_letters WHERE seq <= (
    SELECT seq FROM dead_letters ORDER BY seq DESC LIMIT 1 OFFSET ?)"""

COUNT_EVENTS = "SELECT COUNT(*) FROM events"
COUNT_DEAD = "SELECT COUNT(*) FROM dead_letters WHERE {where}"
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
    async def open(
        cls,
        path: Path,
        *,
        set_aside_corrupt: bool = False,
        connection_factory: type[sqlite3.Connection] = sqlite3.Connection,
    ) -> EventQueue:
        """Open the store at ``path``, creating the file, its directory and the tables if
        needed.

        A damaged file raises :class:`EventStoreError`, or with ``set_aside_corrupt`` (the
        gateway's start-up; never a second process such as the CLI) is renamed with a
        timestamp suffix, logged as an error, and replaced by a fresh store: the events in it
        are lost to the gateway, kept for an operator, and start-up goes on.
        ``connection_factory`` is ``sqlite3.connect``'s, for tests that fail statements.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return await cls._open(path, connection_factory)
        except EventStoreError as exc:
            if not (set_aside_corrupt and _is_corrupt(exc.__cause__)):
                raise
            aside = _set_aside(path)
            log.error(
                "event store corrupt; set aside and started afresh",
                path=str(path),
                set_aside_as=str(aside),
                error=str(exc.__cause__),
            )
        return await cls._open(path, connection_factory)

    @classmethod
    async def _open(cls, path: Path, factory: type[sqlite3.Connection]) -> EventQueue:
        try:
            # isolation_level=None: no implicit transactions, every write says BEGIN itself.
            db = await aiosqlite.connect(
                path, isolation_level=None, timeout=BUSY_TIMEOUT_S, factory=factory
            )
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
        async with self._guard() as db:
            # Checked first, so a damaged file is set aside as it was found.
            [(verdict,)] = await db.execute_fetchall(QUICK_CHECK)
            if verdict != "ok":
                damaged = sqlite3.DatabaseError(f"quick_check: {verdict}")
                damaged.sqlite_errorcode = sqlite3.SQLITE_CORRUPT
                raise damaged
            for pragma in PRAGMAS:
                await db.execute(pragma)
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
                if db.in_transaction:
                    # A rollback that failed (full disk) left one open: end it first, or
                    # every BEGIN from now on would fail.
                    await db.rollback()
                await db.execute(BEGIN)
                yield db
                await db.commit()
            except BaseException:
                await db.rollback()
                raise

    async def _fetchall(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> list[Sequence[Any]]:
        async with self._guard() as db:
            return list(await db.execute_fetchall(sql, params))

    async def enqueue(
        self,
        function: str,
        payload: bytes,
        *,
        trace_id: str | None,
        now_s: float,
        max_queued: int | None = None,
    ) -> str:
        """Store a new event, due now, and return its id once it is committed (the point
        after which the caller may answer 202). With ``max_queued``, a function that already
        has that many events queued or running gets :class:`EventQueueFull` instead."""
        event_id = str(uuid.uuid4())
        async with self._transaction() as db:
            if max_queued is not None:
                [(count,)] = await db.execute_fetchall(COUNT_FUNCTION, (function,))
                if count >= max_queued:
                    raise EventQueueFull(
                        f"function {function} has {count} Event invocations stored, its limit"
                    )
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

    async def prune_dead_letters(self, now_s: float, retention: DeadLetterRetention) -> int:
        """Drop the dead letters older than the retention time, then the oldest beyond its
        count; return how many went."""
        async with self._transaction() as db:
            old = await db.execute(DROP_OLD_DEAD, (now_s - retention.max_age_s,))
            excess = await db.execute(DROP_EXCESS_DEAD, (retention.max_count,))
        return old.rowcount + excess.rowcount

    async def requeue_orphans(self, held: Collection[str], now_s: float) -> int:
        """Queue again, due now, every running event whose id is not in ``held`` (the events
        the one worker is running or settling); return how many. Their interrupted attempt
        still counts, as in :meth:`recover`."""
        async with self._transaction() as db:
            cursor = await db.execute(REQUEUE_ORPHANS, (now_s, json.dumps(sorted(held))))
        return cursor.rowcount

    async def recover(self, now_s: float) -> int:
        """At start-up, before any worker runs: queue again, due now, every event the previous
        process left running (it died mid-attempt); return how many."""
        async with self._transaction() as db:
            cursor = await db.execute(REQUEUE_RUNNING, (now_s,))
        if cursor.rowcount:
            log.warning("requeued interrupted events", count=cursor.rowcount)
        return cursor.rowcount

    async def dead_letters(
        self, *, function: str | None = None, limit: int | None = None
    ) -> list[DeadLetteredEvent]:
        """The dead-lettered events (of ``function`` only, when named), oldest first; at
        most ``limit``."""
        where, params = _dead_filter(None, function, limit)
        rows = await self._fetchall(SELECT_DEAD.format(where=where), params)
        return [_dead_lettered_event(row) for row in rows]

    async def replay(
        self,
        event_id: str | None = None,
        *,
        function: str | None = None,
        now_s: float,
        limit: int | None = None,
    ) -> int:
        """Queue dead letters again, due now, with their attempts and age reset: the one
        with ``event_id``, else those of ``function``, else all; the oldest ``limit`` at
        most. How many moved (0 for an unknown id)."""
        where, params = _dead_filter(event_id, function, limit)
        async with self._transaction() as db:
            cursor = await db.execute(REPLAY_DEAD.format(where=where), {**params, "now": now_s})
            await db.execute(DELETE_DEAD.format(where=where), params)
        return cursor.rowcount

    async def function_depth(self, function: str) -> int:
        """Events of ``function`` queued or running (what ``max_queued`` bounds)."""
        rows = await self._fetchall(COUNT_FUNCTION, (function,))
        return int(rows[0][0])

    async def depth(self) -> int:
        """Events queued or running."""
        rows = await self._fetchall(COUNT_EVENTS)
        return int(rows[0][0])

    async def dead_letter_count(self, function: str | None = None) -> int:
        where, params = _dead_filter(None, function, None)
        rows = await self._fetchall(COUNT_DEAD.format(where=where), params)
        return int(rows[0][0])

    async def next_due_s(self) -> float | None:
        """When the earliest queued event is due, or None when nothing is queued."""
        rows = await self._fetchall(NEXT_DUE)
        due = rows[0][0]
        return None if due is None else float(due)


def _dead_filter(
    event_id: str | None, function: str | None, limit: int | None
) -> tuple[str, dict[str, Any]]:
    """The WHERE clause (one of :data:`DEAD_FILTERS`) and parameters choosing dead letters."""
    kind = "id" if event_id is not None else "function" if function is not None else "all"
    params = {"id": event_id, "function": function, "limit": -1 if limit is None else limit}
    return DEAD_FILTERS[kind], params


def _is_corrupt(error: BaseException | None) -> bool:
    """Whether SQLite said the file is damaged or not a database at all."""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in CORRUPT_CODES  # the primary code's byte


def _set_aside(path: Path) -> Path:
    """Rename a damaged store, and its WAL side files, with a timestamp suffix that sorts;
    return the new name of the store itself."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", *SIDE_FILES):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(aside.with_name(aside.name + suffix))
    return aside
