"""The durable event queue: claims, retries, dead letters and recovery, with time injected."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from edgelambda.async_events import (
    DeadLetter,
    DeadLetterReason,
    DeadLetterRetention,
    QueuedEvent,
    Retry,
    RetryPolicy,
)
from edgelambda.errors import EventNotInFlight, EventQueueFull
from edgelambda.event_queue import QUEUE_FILE, EventQueue

POLICY = RetryPolicy(delays_s=(60.0, 120.0), max_age_s=21600.0)

QueueFactory = Callable[[], Awaitable[EventQueue]]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / QUEUE_FILE


@pytest.fixture
async def open_queue(db_path: Path) -> AsyncIterator[QueueFactory]:
    """Opens the store at one path, as often as a test reopens it; closes what stays open."""
    opened: list[EventQueue] = []

    async def factory() -> EventQueue:
        queue = await EventQueue.open(db_path)
        opened.append(queue)
        return queue

    yield factory
    for queue in opened:
        await queue.close()


@pytest.fixture
async def queue(open_queue: QueueFactory) -> EventQueue:
    return await open_queue()


async def enqueue_n(queue: EventQueue, n: int, *, now_s: float = 0.0) -> list[str]:
    return [
        await queue.enqueue("fn", f"{i}".encode(), trace_id=None, now_s=now_s) for i in range(n)
    ]


async def test_enqueue_claim_ack_round_trip(queue: EventQueue) -> None:
    event_id = await queue.enqueue("hello", b'{"a": 1}', trace_id="Root=1-abc", now_s=10.0)

    [claimed] = await queue.claim(now_s=10.0, limit=5)

    assert claimed == QueuedEvent(
        id=event_id,
        function="hello",
        payload=b'{"a": 1}',
        trace_id="Root=1-abc",
        attempts=1,
        enqueued_at_s=10.0,
        next_attempt_at_s=10.0,
        last_error=None,
    )
    assert await queue.depth() == 1
    await queue.ack(event_id)
    assert await queue.depth() == 0
    assert await queue.claim(now_s=99.0, limit=5) == []


async def test_store_is_one_wal_file(queue: EventQueue, db_path: Path) -> None:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_claim_is_fifo_by_due_time_then_enqueue_order(queue: EventQueue) -> None:
    first = await queue.enqueue("fn", b"1", trace_id=None, now_s=0.0)
    second = await queue.enqueue("fn", b"2", trace_id=None, now_s=1.0)
    [claimed] = await queue.claim(now_s=2.0, limit=1)
    await queue.fail(claimed.id, "boom", now_s=2.0, policy=POLICY)  # due again at 62
    third = await queue.enqueue("fn", b"3", trace_id=None, now_s=3.0)
    fourth = await queue.enqueue("fn", b"4", trace_id=None, now_s=3.0)

    claimed_ids = [e.id for e in await queue.claim(now_s=100.0, limit=10)]

    assert claimed.id == first
    assert claimed_ids == [second, third, fourth, first]


async def test_claim_only_takes_due_events_up_to_the_limit(queue: EventQueue) -> None:
    await queue.enqueue("fn", b"later", trace_id=None, now_s=50.0)
    ids = await enqueue_n(queue, 3, now_s=0.0)

    assert [e.id for e in await queue.claim(now_s=10.0, limit=2)] == ids[:2]
    assert [e.id for e in await queue.claim(now_s=10.0, limit=2)] == ids[2:]
    assert await queue.claim(now_s=10.0, limit=2) == []
    assert await queue.claim(now_s=10.0, limit=0) == []


async def test_claim_never_hands_out_an_event_twice(queue: EventQueue) -> None:
    ids = await enqueue_n(queue, 6)

    batches = await asyncio.gather(*(queue.claim(now_s=0.0, limit=2) for _ in range(5)))

    claimed = [e.id for batch in batches for e in batch]
    assert sorted(claimed) == sorted(ids)
    assert await queue.claim(now_s=0.0, limit=10) == []


async def test_failures_retry_after_each_delay_then_dead_letter(queue: EventQueue) -> None:
    event_id = await queue.enqueue("fn", b"{}", trace_id="t", now_s=0.0)

    [first] = await queue.claim(now_s=0.0, limit=1)
    assert await queue.fail(event_id, "boom 1", now_s=10.0, policy=POLICY) == Retry(70.0)
    assert await queue.next_due_s() == 70.0
    assert await queue.claim(now_s=69.9, limit=1) == []

    [second] = await queue.claim(now_s=70.0, limit=1)
    assert await queue.fail(event_id, "boom 2", now_s=75.0, policy=POLICY) == Retry(195.0)
    assert await queue.claim(now_s=194.0, limit=1) == []

    [third] = await queue.claim(now_s=195.0, limit=1)
    decision = await queue.fail(event_id, "boom 3", now_s=196.0, policy=POLICY)

    assert [first.attempts, second.attempts, third.attempts] == [1, 2, 3]
    assert second.last_error == "boom 1"
    assert third.last_error == "boom 2"
    assert decision == DeadLetter(DeadLetterReason.RETRIES_EXHAUSTED)
    assert await queue.depth() == 0
    [dead] = await queue.dead_letters()
    assert (dead.id, dead.function, dead.payload, dead.trace_id) == (event_id, "fn", b"{}", "t")
    assert (dead.attempts, dead.enqueued_at_s, dead.dead_at_s) == (3, 0.0, 196.0)
    assert (dead.reason, dead.last_error) == (DeadLetterReason.RETRIES_EXHAUSTED, "boom 3")


async def test_failure_past_max_age_dead_letters(queue: EventQueue) -> None:
    policy = RetryPolicy(delays_s=(60.0, 120.0), max_age_s=100.0)
    event_id = await queue.enqueue("fn", b"{}", trace_id=None, now_s=0.0)
    await queue.claim(now_s=50.0, limit=1)

    decision = await queue.fail(event_id, "boom", now_s=50.0, policy=policy)

    assert decision == DeadLetter(DeadLetterReason.EVENT_TOO_OLD)
    [dead] = await queue.dead_letters()
    assert (dead.reason, dead.attempts, dead.last_error) == (
        DeadLetterReason.EVENT_TOO_OLD,
        1,
        "boom",
    )


async def test_expire_dead_letters_queued_events_past_max_age(queue: EventQueue) -> None:
    old = await queue.enqueue("fn", b"old", trace_id=None, now_s=0.0)
    young = await queue.enqueue("fn", b"young", trace_id=None, now_s=50.0)

    assert await queue.expire(now_s=100.0, max_age_s=100.0) == 0  # exactly the age: kept
    assert await queue.expire(now_s=101.0, max_age_s=100.0) == 1

    assert [e.id for e in await queue.claim(now_s=101.0, limit=10)] == [young]
    [dead] = await queue.dead_letters()
    assert (dead.id, dead.reason, dead.attempts) == (old, DeadLetterReason.EVENT_TOO_OLD, 0)


async def test_ack_and_fail_refuse_an_event_that_is_not_running(queue: EventQueue) -> None:
    event_id = await queue.enqueue("fn", b"{}", trace_id=None, now_s=0.0)

    with pytest.raises(EventNotInFlight):
        await queue.ack(event_id)
    with pytest.raises(EventNotInFlight):
        await queue.fail("no-such-event", "boom", now_s=0.0, policy=POLICY)
    assert await queue.depth() == 1


@pytest.mark.parametrize("yields", [1, 2, 3, 5, 8])
async def test_a_cancelled_write_leaves_the_store_usable(queue: EventQueue, yields: int) -> None:
    write = asyncio.create_task(queue.enqueue("fn", b"{}", trace_id=None, now_s=0.0))
    for _ in range(yields):  # cancel at BEGIN, INSERT or COMMIT, whichever it has reached
        await asyncio.sleep(0)
    write.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await write

    await queue.enqueue("fn", b"{}", trace_id=None, now_s=1.0)

    assert await queue.depth() in (1, 2)  # the cancelled one either committed or not at all
    assert await queue.depth() == len(await queue.claim(now_s=1.0, limit=10))


async def test_closed_without_ack_nothing_is_lost(open_queue: QueueFactory) -> None:
    queue = await open_queue()
    ids = await enqueue_n(queue, 3, now_s=0.0)
    [running] = await queue.claim(now_s=1.0, limit=1)
    await queue.close()  # the "crash": the running event was never acked

    reopened = await open_queue()

    assert await reopened.depth() == 3
    assert await reopened.recover(now_s=5.0) == 1
    assert await reopened.recover(now_s=5.0) == 0
    claimed = await reopened.claim(now_s=5.0, limit=10)
    assert [e.id for e in claimed] == [ids[1], ids[2], running.id]  # due now, so after the rest
    assert [e.attempts for e in claimed] == [1, 1, 2]  # the interrupted attempt still counts


KILLED_GATEWAY = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from edgelambda.event_queue import EventQueue

    async def main():
        queue = await EventQueue.open(Path(sys.argv[1]))
        for i in range(3):
            await queue.enqueue("fn", str(i).encode(), trace_id=None, now_s=float(i))
        await queue.claim(now_s=10.0, limit=1)
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
    """
)


async def test_sigkilled_process_loses_no_event(open_queue: QueueFactory, db_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_GATEWAY, str(db_path)
    )
    assert await asyncio.wait_for(process.wait(), timeout=30.0) == -signal.SIGKILL

    queue = await open_queue()

    assert await queue.recover(now_s=20.0) == 1
    claimed = await queue.claim(now_s=20.0, limit=10)
    assert [e.payload for e in claimed] == [b"1", b"2", b"0"]
    assert [e.attempts for e in claimed] == [1, 1, 2]


async def test_replay_one_or_all_dead_letters(queue: EventQueue) -> None:
    policy = RetryPolicy(delays_s=())  # the first failure is final
    ids = await enqueue_n(queue, 3, now_s=0.0)
    for claimed in await queue.claim(now_s=0.0, limit=3):
        await queue.fail(claimed.id, "boom", now_s=1.0, policy=policy)
    assert len(await queue.dead_letters()) == 3

    assert await queue.replay(ids[1], now_s=30000.0) == 1
    assert await queue.replay("no-such-event", now_s=30000.0) == 0
    assert [d.id for d in await queue.dead_letters()] == [ids[0], ids[2]]
    assert await queue.replay(now_s=30001.0) == 2

    assert await queue.dead_letters() == []
    claimed = await queue.claim(now_s=30001.0, limit=10)
    assert [e.id for e in claimed] == [ids[1], ids[0], ids[2]]
    assert {(e.attempts, e.last_error) for e in claimed} == {(1, None)}
    # the age restarts, so the default maximum age does not bury a replay at once
    assert [e.enqueued_at_s for e in claimed] == [30000.0, 30001.0, 30001.0]


async def test_depth_and_next_due(queue: EventQueue) -> None:
    assert (await queue.depth(), await queue.next_due_s()) == (0, None)
    first = await queue.enqueue("fn", b"{}", trace_id=None, now_s=5.0)
    await queue.enqueue("fn", b"{}", trace_id=None, now_s=7.0)
    assert (await queue.depth(), await queue.next_due_s()) == (2, 5.0)

    await queue.claim(now_s=5.0, limit=1)
    assert (await queue.depth(), await queue.next_due_s()) == (2, 7.0)  # running still counts
    await queue.fail(first, "boom", now_s=6.0, policy=POLICY)
    await queue.claim(now_s=7.0, limit=1)
    assert (await queue.depth(), await queue.next_due_s()) == (2, 66.0)


async def test_a_function_queue_at_its_bound_refuses_more(queue: EventQueue) -> None:
    await queue.enqueue("fn", b"1", trace_id=None, now_s=0.0, max_queued=2)
    await queue.enqueue("fn", b"2", trace_id=None, now_s=0.0, max_queued=2)
    await queue.claim(now_s=0.0, limit=1)  # running events count too

    with pytest.raises(EventQueueFull, match="fn"):
        await queue.enqueue("fn", b"3", trace_id=None, now_s=0.0, max_queued=2)
    await queue.enqueue("other", b"1", trace_id=None, now_s=0.0, max_queued=2)  # its own bound

    assert await queue.depth() == 3
    [running] = await queue.claim(now_s=0.0, limit=1)
    await queue.ack(running.id)
    await queue.enqueue("fn", b"3", trace_id=None, now_s=0.0, max_queued=2)  # room again


async def bury(queue: EventQueue, n: int, *, now_s: float) -> list[str]:
    ids = await enqueue_n(queue, n, now_s=now_s)
    for claimed in await queue.claim(now_s=now_s, limit=n):
        await queue.fail(claimed.id, "boom", now_s=now_s, policy=RetryPolicy(delays_s=()))
    return ids


async def test_dead_letters_are_kept_for_their_retention_time(queue: EventQueue) -> None:
    retention = DeadLetterRetention(max_age_s=100.0, max_count=1000)
    old = await bury(queue, 2, now_s=0.0)
    young = await bury(queue, 1, now_s=50.0)

    assert await queue.prune_dead_letters(now_s=100.0, retention=retention) == 0  # exactly
    assert await queue.prune_dead_letters(now_s=101.0, retention=retention) == 2

    assert [d.id for d in await queue.dead_letters()] == young
    assert old[0] not in {d.id for d in await queue.dead_letters()}


async def test_dead_letters_beyond_the_count_drop_the_oldest(queue: EventQueue) -> None:
    retention = DeadLetterRetention(max_age_s=1e9, max_count=3)
    ids = await bury(queue, 5, now_s=0.0)

    assert await queue.prune_dead_letters(now_s=1.0, retention=retention) == 2
    assert await queue.prune_dead_letters(now_s=1.0, retention=retention) == 0

    assert [d.id for d in await queue.dead_letters()] == ids[2:]


async def test_requeue_orphans_spares_the_events_still_held(queue: EventQueue) -> None:
    ids = await enqueue_n(queue, 3, now_s=0.0)
    await queue.claim(now_s=0.0, limit=3)  # say the claim's reply was lost for ids[1:]

    assert await queue.requeue_orphans(held={ids[0]}, now_s=5.0) == 2

    claimed = await queue.claim(now_s=5.0, limit=10)
    assert [e.id for e in claimed] == ids[1:]
    assert [e.attempts for e in claimed] == [2, 2]
    await queue.ack(ids[0])  # the held one is still running, its outcome still welcome


KILLED_WORKER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from edgelambda.async_events import RetryPolicy
    from edgelambda.event_queue import EventQueue
    from edgelambda.event_worker import EventWorker

    async def run(event):
        print("settling", event.id, flush=True)  # said before its outcome may be stored
        return "boom" if event.payload == b'"fail"' else None

    async def main():
        queue = await EventQueue.open(Path(sys.argv[1]))
        await queue.recover(time.time())
        worker = EventWorker(queue, run, policy=RetryPolicy(delays_s=(0.0, 0.0)),
                             poll_interval_s=0.001)
        worker.start()
        for i in range(1000):
            payload = b'"fail"' if i % 3 == 0 else b"{}"
            event_id = await queue.enqueue("fn", payload, trace_id=None, now_s=time.time())
            print("accepted", event_id, flush=True)  # the 202
            worker.notify()
            await asyncio.sleep(0)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("kill_after_s", [0.05, 0.2, 0.5])
async def test_sigkill_mid_run_leaves_every_accepted_event_to_finish(
    open_queue: QueueFactory, db_path: Path, kill_after_s: float
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_WORKER, str(db_path), stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    first = await process.stdout.readline()  # the first 202: the worker is running
    await asyncio.sleep(kill_after_s)
    process.kill()
    output, _ = await process.communicate()
    lines = [line.split() for line in (first + output).decode().splitlines()]
    said = [line for line in lines if len(line) == 2]  # not the worker's own log lines
    accepted = {event_id for word, event_id in said if word == "accepted"}
    settling = {event_id for word, event_id in said if word == "settling"}
    assert accepted

    queue = await open_queue()
    await queue.recover(now_s=0.0)
    stored = {e.id for e in await queue.claim(now_s=1e12, limit=100_000)}
    dead = {d.id for d in await queue.dead_letters()}

    # Every acknowledged event is still queued, dead-lettered, or was being settled (acked
    # or failed for good) when the process died.
    assert accepted <= stored | dead | settling
    for event_id in stored:  # the rest finish in the next process
        await queue.ack(event_id)
    assert await queue.depth() == 0
