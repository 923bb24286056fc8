"""The event store under faults, without an engine: a full disk at every statement of a run
(the write refused, or done with its success never reported), a corrupt file at start-up,
and a gateway answering Event invocations over both. Whatever fails, no event is
acknowledged (202) without a committed row, every acknowledged event ends acked or
dead-lettered, and the worker keeps running."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edgelambda.async_events import QueuedEvent, RetryPolicy
from edgelambda.errors import EventStoreError
from edgelambda.event_queue import QUEUE_FILE, EventQueue
from edgelambda.event_worker import EventWorker
from tests.faulty_sqlite import Disk

WAIT_S = 5.0
# More statements than the script below runs in its first polls: enqueues, claims, acks,
# failures, retries, dead letters, the worker's housekeeping.
STATEMENTS = 48
EVENTS = 4


async def eventually(predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def rows(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Read the file as another process would: only committed rows are visible."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return list(db.execute(sql, params))


class Outcomes:
    """Runs events: a payload of ``"fail"`` always fails; records every success."""

    def __init__(self) -> None:
        self.succeeded: list[str] = []
        self.calls = 0

    async def __call__(self, event: QueuedEvent) -> str | None:
        self.calls += 1
        await asyncio.sleep(0)
        if event.payload == b'"fail"':
            return "boom"
        self.succeeded.append(event.id)
        return None


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / QUEUE_FILE


@pytest.fixture
async def faulty_store(db_path: Path) -> AsyncIterator[tuple[EventQueue, Disk]]:
    disk = Disk()
    queue = await EventQueue.open(db_path, connection_factory=disk.connection_class())
    yield queue, disk
    disk.room()
    await queue.close()


@pytest.mark.parametrize("lost_reply", [False, True], ids=["refused", "lost-reply"])
@pytest.mark.parametrize("n", range(1, STATEMENTS + 1))
async def test_a_full_disk_at_any_statement_loses_no_event(
    faulty_store: tuple[EventQueue, Disk], db_path: Path, n: int, lost_reply: bool
) -> None:
    queue, disk = faulty_store
    outcomes = Outcomes()
    worker = EventWorker(
        queue,
        outcomes,
        policy=RetryPolicy(delays_s=(0.0, 0.0)),
        concurrency=2,
        poll_interval_s=0.005,
        store_retry_delays_s=(0.002, 0.005),
    )
    disk.fill_at(n, count=3, lost_reply=lost_reply)  # commit, rollback and a retry, say
    worker.start()
    accepted: list[str] = []
    try:
        for i in range(EVENTS):
            payload = b'"fail"' if i == 1 else f'{{"n": {i}}}'.encode()
            try:
                event_id = await queue.enqueue("fn", payload, trace_id=None, now_s=time.time())
            except EventStoreError:
                continue  # the caller got a 5xx; the event may or may not be stored
            # What a 202 promises: the row is committed, visible to any other reader.
            assert rows(db_path, "SELECT state FROM events WHERE id = ?", (event_id,)) != []
            accepted.append(event_id)
            worker.notify()

        def settled() -> bool:
            return rows(db_path, "SELECT COUNT(*) FROM events") == [(0,)] and not disk.is_full

        await eventually(settled)
        dead = {str(row[0]) for row in rows(db_path, "SELECT id FROM dead_letters")}
        for event_id in accepted:
            assert event_id in outcomes.succeeded or event_id in dead, "an event was lost"
        assert len(accepted) >= EVENTS - 3  # at most the three failing statements refused

        # The worker survived it all: a new event still runs.
        last = await queue.enqueue("fn", b"{}", trace_id=None, now_s=time.time())
        worker.notify()
        await eventually(lambda: last in outcomes.succeeded)
    finally:
        await worker.close()


async def test_an_ack_on_a_full_disk_is_stored_once_there_is_room(
    faulty_store: tuple[EventQueue, Disk], db_path: Path
) -> None:
    queue, disk = faulty_store
    runs: list[str] = []

    async def run(event: QueuedEvent) -> str | None:
        runs.append(event.id)
        disk.fill_now()  # the disk fills while the function runs: the ack cannot be written
        return None

    worker = EventWorker(queue, run, poll_interval_s=0.005, store_retry_delays_s=(0.002,))
    worker.start()
    try:
        event_id = await queue.enqueue("fn", b"{}", trace_id=None, now_s=time.time())
        worker.notify()
        await eventually(lambda: disk.failures >= 10)  # the ack was retried, still no room
        assert rows(db_path, "SELECT state FROM events") == [("running",)]

        disk.room()

        await eventually(lambda: rows(db_path, "SELECT COUNT(*) FROM events") == [(0,)])
        assert runs == [event_id]  # acked, not run again
    finally:
        await worker.close()


# -- a corrupt file at start-up -------------------------------------------------------------


def corrupt_header(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an sqlite database" * 200)
    return path.read_bytes()


def corrupt_pages(path: Path) -> bytes:
    """A well-formed header over broken b-tree pages ("database disk image is malformed")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE filler (x BLOB)")
        db.executemany("INSERT INTO filler VALUES (?)", [(b"x" * 3000,) for _ in range(50)])
        db.commit()
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    for page in range(2, len(data) // page_size):
        data[page * page_size : page * page_size + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    return bytes(data)


@pytest.mark.parametrize("corrupt", [corrupt_header, corrupt_pages])
async def test_a_corrupt_file_is_set_aside_and_a_fresh_store_opened(
    db_path: Path, corrupt: Callable[[Path], bytes]
) -> None:
    original = corrupt(db_path)

    with capture_logs() as logs:
        queue = await EventQueue.open(db_path, set_aside_corrupt=True)
    try:
        event_id = await queue.enqueue("fn", b"{}", trace_id=None, now_s=0.0)
        assert [e.id for e in await queue.claim(now_s=0.0, limit=5)] == [event_id]
    finally:
        await queue.close()

    [aside] = db_path.parent.glob(f"{QUEUE_FILE}.corrupt-*[0-9]Z")
    assert aside.read_bytes() == original
    [error] = [e for e in logs if e["log_level"] == "error"]
    assert error["path"] == str(db_path)
    assert error["set_aside_as"] == str(aside)


async def test_a_corrupt_file_is_an_error_unless_set_aside_is_asked(db_path: Path) -> None:
    corrupt_header(db_path)  # the CLI reading a gateway's store must never move it

    with pytest.raises(EventStoreError, match="not a database"):
        await EventQueue.open(db_path)

    assert [p.name for p in db_path.parent.iterdir()] == [QUEUE_FILE]


async def test_a_full_disk_at_start_up_is_not_taken_for_corruption(db_path: Path) -> None:
    disk = Disk()
    disk.fill_now()

    with pytest.raises(EventStoreError, match="disk is full"):
        await EventQueue.open(
            db_path, set_aside_corrupt=True, connection_factory=disk.connection_class()
        )

    assert not list(db_path.parent.glob("*.corrupt-*"))
