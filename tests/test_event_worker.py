"""The event worker: runs due events, retries on schedule, bounds concurrency, drains on
close, with time injected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edgelambda.async_events import DeadLetterReason, DeadLetterRetention, QueuedEvent, RetryPolicy
from edgelambda.errors import EventStoreError
from edgelambda.event_queue import QUEUE_FILE, EventQueue
from edgelambda.event_worker import EventWorker

POLICY = RetryPolicy(delays_s=(60.0, 120.0), max_age_s=21600.0)
WAIT_S = 5.0  # upper bound on any wait for the worker; the happy path takes milliseconds


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[EventQueue]:
    """The store the worker drains; closed after the worker (fixtures tear down in reverse)."""
    queue = await EventQueue.open(tmp_path / "data" / QUEUE_FILE)
    yield queue
    await queue.close()


async def enqueue_n(queue: EventQueue, n: int, *, now_s: float = 0.0) -> list[str]:
    return [
        await queue.enqueue("fn", f"{i}".encode(), trace_id=None, now_s=now_s) for i in range(n)
    ]


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


class FakeRun:
    """Records every attempt; answers with the next scripted outcome (None = success)."""

    def __init__(self, *outcomes: str | Exception | None) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[QueuedEvent] = []
        self.gate: asyncio.Event | None = None  # when set, runs wait for it

    async def __call__(self, event: QueuedEvent) -> str | None:
        self.calls.append(event)
        if self.gate is not None:
            await self.gate.wait()
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


async def eventually(predicate: Callable[[], Awaitable[bool]]) -> None:
    async def poll() -> None:
        while True:
            if await predicate():
                return
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout=WAIT_S)


WorkerFactory = Callable[..., EventWorker]


@pytest.fixture
async def make_worker(queue: EventQueue) -> AsyncIterator[WorkerFactory]:
    """Starts workers on the test's queue; closes them before the queue closes."""
    workers: list[EventWorker] = []

    def factory(
        run: FakeRun, clock: FakeClock, *, concurrency: int = 4, poll_interval_s: float = 0.01
    ) -> EventWorker:
        worker = EventWorker(
            queue,
            run,
            policy=POLICY,
            clock=clock,
            concurrency=concurrency,
            poll_interval_s=poll_interval_s,
        )
        worker.start()
        workers.append(worker)
        return worker

    yield factory
    for worker in workers:
        await worker.close()


async def test_worker_runs_and_acks(queue: EventQueue, make_worker: WorkerFactory) -> None:
    clock, run = FakeClock(), FakeRun()
    worker = make_worker(run, clock)
    ids = await enqueue_n(queue, 3, now_s=clock.now_s)
    worker.notify()

    async def drained() -> bool:
        return await queue.depth() == 0

    await eventually(drained)
    assert [e.id for e in run.calls] == ids
    assert await queue.dead_letters() == []


async def test_worker_wakes_on_notify(queue: EventQueue, make_worker: WorkerFactory) -> None:
    clock, run = FakeClock(), FakeRun()
    worker = make_worker(run, clock, poll_interval_s=60.0)  # only notify() wakes it in time
    # Due only once the fake clock moves, so the worker sleeps whenever it first looks.
    event_id = await queue.enqueue("fn", b"{}", trace_id=None, now_s=clock.now_s + 10.0)
    await asyncio.sleep(0.02)
    assert run.calls == []

    clock.now_s += 10.0
    worker.notify()

    async def ran() -> bool:
        return await queue.depth() == 0

    await eventually(ran)
    assert [e.id for e in run.calls] == [event_id]


async def test_worker_retries_on_schedule_then_dead_letters(
    queue: EventQueue, make_worker: WorkerFactory
) -> None:
    clock, run = FakeClock(), FakeRun("boom 1", RuntimeError("kaput"), "boom 3")
    worker = make_worker(run, clock)
    event_id = await queue.enqueue("fn", b"{}", trace_id=None, now_s=clock.now_s)
    worker.notify()

    async def attempted(n: int) -> None:
        async def check() -> bool:
            return len(run.calls) == n and await queue.next_due_s() is not None

        await eventually(check)

    await attempted(1)
    assert await queue.next_due_s() == clock.now_s + 60.0
    await asyncio.sleep(0.03)  # several polls pass; nothing is due yet
    assert len(run.calls) == 1

    clock.now_s += 60.0
    worker.notify()
    await attempted(2)
    assert await queue.next_due_s() == clock.now_s + 120.0

    clock.now_s += 120.0
    worker.notify()

    async def dead() -> bool:
        return len(await queue.dead_letters()) == 1

    await eventually(dead)
    [letter] = await queue.dead_letters()
    assert [e.attempts for e in run.calls] == [1, 2, 3]
    assert run.calls[2].last_error == "RuntimeError: kaput"  # an exception is a failure too
    assert (letter.id, letter.reason, letter.last_error) == (
        event_id,
        DeadLetterReason.RETRIES_EXHAUSTED,
        "boom 3",
    )
    assert await queue.depth() == 0


async def test_worker_bounds_concurrency(queue: EventQueue, make_worker: WorkerFactory) -> None:
    clock, run = FakeClock(), FakeRun()
    run.gate = asyncio.Event()
    worker = make_worker(run, clock, concurrency=2)
    await enqueue_n(queue, 5, now_s=clock.now_s)
    worker.notify()

    async def two_started() -> bool:
        return len(run.calls) == 2

    await eventually(two_started)
    await asyncio.sleep(0.03)  # more polls do not start more
    assert (len(run.calls), worker.in_flight) == (2, 2)

    run.gate.set()

    async def drained() -> bool:
        return await queue.depth() == 0

    await eventually(drained)
    assert len(run.calls) == 5


async def test_worker_dead_letters_expired_events(
    queue: EventQueue, make_worker: WorkerFactory
) -> None:
    clock, run = FakeClock(), FakeRun()
    await queue.enqueue("fn", b"{}", trace_id=None, now_s=clock.now_s - POLICY.max_age_s - 1)
    make_worker(run, clock)

    async def dead() -> bool:
        return len(await queue.dead_letters()) == 1

    await eventually(dead)
    assert run.calls == []
    assert (await queue.dead_letters())[0].reason == DeadLetterReason.EVENT_TOO_OLD


async def test_worker_close_leaves_unfinished_events_for_recover(queue: EventQueue) -> None:
    clock, run = FakeClock(), FakeRun()
    run.gate = asyncio.Event()  # never set: the run hangs
    worker = EventWorker(queue, run, clock=clock, poll_interval_s=0.01, drain_timeout_s=0.02)
    worker.start()
    await queue.enqueue("fn", b"{}", trace_id=None, now_s=clock.now_s)
    worker.notify()

    async def started() -> bool:
        return len(run.calls) == 1

    await eventually(started)
    await asyncio.wait_for(worker.close(), timeout=WAIT_S)

    assert worker.in_flight == 0
    assert await queue.recover(now_s=clock.now_s) == 1
    assert await queue.depth() == 1


async def test_worker_survives_any_exception_in_its_loop(
    queue: EventQueue, make_worker: WorkerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, run = FakeClock(), FakeRun()
    real_claim = queue.claim
    failures = [ValueError("a bug"), EventStoreError("disk I/O error")]

    async def claim(now_s: float, limit: int) -> list[QueuedEvent]:
        if failures:
            raise failures.pop(0)
        return await real_claim(now_s, limit)

    monkeypatch.setattr(queue, "claim", claim)
    with capture_logs() as logs:
        make_worker(run, clock)
        event_id = await queue.enqueue("fn", b"{}", trace_id=None, now_s=clock.now_s)

        async def ran() -> bool:
            return await queue.depth() == 0

        await eventually(ran)

    assert [e.id for e in run.calls] == [event_id]
    [bug] = [e for e in logs if e.get("exc_info")]
    assert bug["log_level"] == "error"


async def test_worker_prunes_dead_letters(queue: EventQueue) -> None:
    clock, run = FakeClock(), FakeRun("boom", "boom", "boom")
    worker = EventWorker(
        queue,
        run,
        policy=RetryPolicy(delays_s=()),
        retention=DeadLetterRetention(max_age_s=100.0, max_count=2),
        clock=clock,
        poll_interval_s=0.01,
    )
    await enqueue_n(queue, 3, now_s=clock.now_s)
    worker.start()
    try:

        async def two_kept() -> bool:
            return len(run.calls) == 3 and len(await queue.dead_letters()) == 2

        await eventually(two_kept)
        clock.now_s += 101.0

        async def none_kept() -> bool:
            return await queue.dead_letters() == []

        await eventually(none_kept)
    finally:
        await worker.close()
