"""The pool's decisions as pure functions: no engine, no sleeping."""

from __future__ import annotations

import asyncio

import pytest

from edgelambda.errors import InvalidRequestId, SandboxRetired, SandboxStateError, TooManyRequests
from edgelambda.invocation import Invocation, InvocationResult, error_result
from edgelambda.sandbox import (
    FunctionPool,
    PayloadTally,
    ReleaseTally,
    Sandbox,
    SandboxState,
    check_payload_budget,
    idle_to_stop,
    sandboxes_to_start,
    stopped_to_remove,
    warm_needed,
    warmest,
)
from tests.fakes import function_spec


def sandbox(
    state: SandboxState,
    *,
    idle_since_s: float = 0.0,
    stopped_s: float = 0.0,
    releases: ReleaseTally | None = None,
) -> Sandbox:
    """A sandbox brought to ``state`` the only way there is: through its transitions."""
    s = Sandbox(function_spec(), now_s=0.0, releases=releases)
    if state is SandboxState.STARTING:
        return s
    s.await_work(asyncio.get_running_loop().create_future(), now_s=idle_since_s)
    if state is SandboxState.BUSY:
        s.assign(Invocation(payload=b"{}"))
    elif state is SandboxState.STOPPED:
        s.stop(stopped_s)
    elif state is SandboxState.DEAD:
        s.retire("test", error_result("Test", "retired"))
    return s


@pytest.mark.parametrize(
    ("queued", "coming", "running", "limit", "expected"),
    [
        (5, 0, 0, 2, 2),  # a burst starts no more than the limit
        (1, 0, 0, 4, 1),  # one waiting call, one start
        (3, 2, 2, 4, 1),  # two starting (or finishing) cover two of three
        (2, 2, 2, 4, 0),
        (9, 0, 4, 4, 0),  # at the limit: wait for a free sandbox
        (0, 0, 0, 4, 0),
    ],
)
def test_sandboxes_to_start(
    queued: int, coming: int, running: int, limit: int, expected: int
) -> None:
    count = sandboxes_to_start(queued=queued, coming=coming, running=running, max_concurrency=limit)

    assert count == expected


async def test_idle_to_stop_picks_ready_sandboxes_past_the_timeout() -> None:
    old = sandbox(SandboxState.READY, idle_since_s=10)
    fresh = sandbox(SandboxState.READY, idle_since_s=95)
    busy = sandbox(SandboxState.BUSY, idle_since_s=0)

    chosen = idle_to_stop([old, fresh, busy], now_s=100, idle_timeout_s=60, min_warm=0)

    assert chosen == [old]


async def test_idle_to_stop_keeps_min_warm_running() -> None:
    a = sandbox(SandboxState.READY, idle_since_s=1)
    b = sandbox(SandboxState.READY, idle_since_s=2)
    c = sandbox(SandboxState.READY, idle_since_s=3)

    chosen = idle_to_stop([c, a, b], now_s=1000, idle_timeout_s=60, min_warm=2)

    assert chosen == [a]  # the longest idle goes; two stay warm


async def test_stopped_to_remove_after_retention() -> None:
    kept = sandbox(SandboxState.STOPPED, stopped_s=500)
    expired = sandbox(SandboxState.STOPPED, stopped_s=100)
    ready = sandbox(SandboxState.READY, idle_since_s=0)

    assert stopped_to_remove([kept, expired, ready], now_s=700, retention_s=600) == [expired]


async def test_warm_needed_counts_only_running_sandboxes() -> None:
    sandboxes = [sandbox(SandboxState.STOPPED), sandbox(SandboxState.STARTING)]

    assert warm_needed(sandboxes, min_warm=3) == 2
    assert warm_needed(sandboxes, min_warm=1) == 0


async def test_a_sandbox_still_streaming_is_not_about_to_be_free() -> None:
    pool = FunctionPool(function_spec(), queue_size=10, payloads=PayloadTally())
    answered = sandbox(SandboxState.BUSY)
    assert answered.current is not None
    answered.answer(answered.current, InvocationResult(payload=b"{}"), now_s=1.0)
    pool.sandboxes.add(answered)
    assert pool.census().coming == 1  # a plain answer: it polls again in a moment

    answered.is_streaming = True

    assert pool.census().coming == 0  # queued work must start another sandbox meanwhile


async def test_the_census_counts_coming_running_and_frozen_sandboxes() -> None:
    pool = FunctionPool(function_spec(), queue_size=10, payloads=PayloadTally())
    answered = sandbox(SandboxState.BUSY)
    assert answered.current is not None
    answered.answer(answered.current, InvocationResult(payload=b"{}"), now_s=1.0)
    frozen = [sandbox(SandboxState.READY, idle_since_s=t) for t in (1.0, 3.0, 2.0)]
    for each in frozen:
        each.freeze()
    thawing = sandbox(SandboxState.READY)
    thawing.freeze()
    thawing.thaw()
    states = (SandboxState.STARTING, SandboxState.READY, SandboxState.BUSY, SandboxState.STOPPED)
    pool.sandboxes.update([answered, thawing, *frozen, *(sandbox(state) for state in states)])

    census = pool.census()

    assert (census.coming, census.running) == (3, 8)
    assert pool.running == census.running
    assert [s.idle_since_s for s in warmest(census.frozen, 3)] == [3.0, 2.0, 1.0]
    assert [s.idle_since_s for s in warmest(census.frozen, 1)] == [3.0]
    assert warmest(census.frozen, 0) == warmest(census.frozen, -2) == []
    assert set(census.frozen) == {s for s in pool.sandboxes if s.state is SandboxState.FROZEN}


def _saturated_pool() -> tuple[FunctionPool, Sandbox, Sandbox]:
    """A pool of two at its limit of two, as a census found it: one busy, one ready."""
    pool = FunctionPool(function_spec(max_concurrency=2), queue_size=10, payloads=PayloadTally())
    busy = sandbox(SandboxState.BUSY, releases=pool.releases)
    ready = sandbox(SandboxState.READY, releases=pool.releases)
    pool.sandboxes.update([busy, ready])
    pool.census()
    return pool, busy, ready


async def test_a_saturated_pool_stays_so_while_work_comes_and_goes() -> None:
    pool, busy, ready = _saturated_pool()
    assert pool.is_saturated()

    assert busy.current is not None
    busy.answer(busy.current, InvocationResult(payload=b"{}"), now_s=1.0)
    busy.await_work(asyncio.get_running_loop().create_future(), now_s=1.0)
    ready.assign(Invocation(payload=b"{}"))

    assert pool.is_saturated()  # busy and ready traded places: still no room


@pytest.mark.parametrize("change", ["freeze", "stop", "retire", "raise the limit", "re-added"])
async def test_a_saturated_pool_counts_again_once_room_may_have_been_made(change: str) -> None:
    pool, busy, ready = _saturated_pool()

    if change == "freeze":
        ready.freeze()  # a frozen sandbox can be thawed for the queue
    elif change == "stop":
        ready.stop(1.0)
    elif change == "retire":
        busy.retire("crash", error_result("Test", "crashed"))
    elif change == "raise the limit":
        pool.configure(function_spec(max_concurrency=3))
    else:  # it left the routing file and came back
        pool.remove(SandboxRetired("removed"))
        pool.configure(function_spec(max_concurrency=2))

    assert not pool.is_saturated()


async def test_every_function_s_waiting_payloads_count_in_one_tally() -> None:
    tally = PayloadTally()
    one = FunctionPool(function_spec(), queue_size=10, payloads=tally)
    other = FunctionPool(function_spec(), queue_size=10, payloads=tally)
    first, second, third = (Invocation(payload=b"x" * n) for n in (100, 20, 3))
    one.enqueue(first)
    other.enqueue(second)
    other.requeue_first(third)
    assert tally.queued_bytes == 123

    check_payload_budget(tally, 77, budget_bytes=200)
    with pytest.raises(TooManyRequests, match="waiting payloads"):
        check_payload_budget(tally, 78, budget_bytes=200)

    assert one.withdraw(first)
    assert other.take_first() is third
    other.fail_waiting(RuntimeError("gone"))
    assert isinstance(second.result.exception(), RuntimeError)
    assert tally.queued_bytes == 0
    assert not one.queue
    assert not other.queue


# -- the guarded transitions --------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "change"),
    [
        (SandboxState.STARTING, "assign"),  # its runtime has not polled: nothing to hand to
        (SandboxState.BUSY, "assign"),  # one invocation at a time
        (SandboxState.STOPPED, "assign"),
        (SandboxState.READY, "restart"),  # only a stopped container is restarted
        (SandboxState.BUSY, "stop"),  # a busy sandbox is never stopped under its caller
        (SandboxState.STARTING, "stop"),
        (SandboxState.STOPPED, "await_work"),  # a stopped container's runtime cannot poll
        (SandboxState.BUSY, "await_work"),  # not before its invocation is answered
        (SandboxState.DEAD, "await_work"),
        (SandboxState.DEAD, "retire"),  # retired once
        (SandboxState.READY, "answer"),  # an answer needs an invocation in flight
        (SandboxState.READY, "start_stream"),
        (SandboxState.STOPPED, "end_stream"),
    ],
)
async def test_a_transition_from_a_wrong_state_raises_and_changes_nothing(
    state: SandboxState, change: str
) -> None:
    s = sandbox(state)
    invocation = Invocation(payload=b"{}")
    attempts = {
        "assign": lambda: s.assign(invocation),
        "restart": lambda: s.restart(now_s=5.0),
        "stop": lambda: s.stop(now_s=5.0),
        "await_work": lambda: s.await_work(asyncio.get_running_loop().create_future(), 5.0),
        "retire": lambda: s.retire("again", error_result("Test", "again")),
        "answer": lambda: s.answer(invocation, InvocationResult(b"{}"), now_s=5.0),
        "start_stream": lambda: s.start_stream(invocation, InvocationResult(b"")),
        "end_stream": lambda: s.end_stream(now_s=5.0),
    }

    with pytest.raises(SandboxStateError, match=f"{state.value}>"):
        attempts[change]()

    assert s.state is state
    assert not invocation.result.done()


async def test_the_life_of_a_sandbox_through_its_transitions() -> None:
    s = Sandbox(function_spec(), now_s=0.0)
    first_poll: asyncio.Future[Invocation] = asyncio.get_running_loop().create_future()
    s.await_work(first_poll, now_s=0.2)
    assert (s.state, s.idle_since_s) == (SandboxState.READY, 0.2)

    invocation = Invocation(payload=b"{}")
    s.assign(invocation)
    assert (s.state, s.current) == (SandboxState.BUSY, invocation)
    assert first_poll.result() is invocation  # the runtime's poll gets it

    s.answer(s.holding(invocation.request_id), InvocationResult(b"ok"), now_s=0.5)
    assert invocation.result.result().payload == b"ok"
    assert s.is_finishing

    s.await_work(asyncio.get_running_loop().create_future(), now_s=0.6)
    s.stop(now_s=9.0)
    assert (s.state, s.stopped_s) == (SandboxState.STOPPED, 9.0)

    s.restart(now_s=20.0)
    assert (s.state, s.is_cold, s.started_s) == (SandboxState.STARTING, False, 20.0)


async def test_retiring_answers_the_invocation_held_and_ends_a_waiting_poll() -> None:
    busy = sandbox(SandboxState.BUSY)
    held = busy.current
    assert held is not None
    crashed = error_result("Runtime.ExitError", "exit status 1")

    assert busy.retire("crashed", crashed) is held

    assert busy.state is SandboxState.DEAD
    assert held.result.result() == crashed
    ready = sandbox(SandboxState.READY)
    poll = ready.poll
    assert poll is not None
    ready.retire("shutdown", crashed)
    with pytest.raises(SandboxRetired, match="shutdown"):
        poll.result()


async def test_stopping_ends_the_idle_runtime_s_poll() -> None:
    ready = sandbox(SandboxState.READY)
    poll = ready.poll
    assert poll is not None

    ready.stop(now_s=3.0)

    with pytest.raises(SandboxRetired, match="idle"):
        poll.result()


async def test_an_answer_for_another_invocation_is_refused() -> None:
    busy = sandbox(SandboxState.BUSY)

    with pytest.raises(InvalidRequestId):
        busy.holding("not-the-one")


async def test_an_invocation_taken_back_goes_to_another_sandbox_only_if_unanswered() -> None:
    busy = sandbox(SandboxState.BUSY)
    held = busy.current
    assert held is not None

    assert busy.take_back(held)
    assert busy.current is None
    answered = sandbox(SandboxState.BUSY)
    assert answered.current is not None
    answered.current.settle(InvocationResult(b"{}"))
    assert not answered.take_back(answered.current)


async def test_the_function_pool_fails_every_waiting_invocation_and_keeps_order() -> None:
    pool = FunctionPool(function_spec(), queue_size=3, payloads=PayloadTally())
    first, second = Invocation(payload=b"1"), Invocation(payload=b"2")
    pool.enqueue(first)
    pool.enqueue(second)
    returned = Invocation(payload=b"0")
    pool.requeue_first(returned)

    assert pool.take_first() is returned
    assert pool.withdraw(second)
    assert not pool.withdraw(second)
    pool.fail_waiting(SandboxRetired("gone"))
    assert isinstance(first.result.exception(), SandboxRetired)
    assert not pool.queue


async def test_the_function_pool_hands_the_oldest_work_to_the_sandbox_freed_last() -> None:
    pool = FunctionPool(function_spec(), queue_size=3, payloads=PayloadTally())
    earlier, later = sandbox(SandboxState.READY), sandbox(SandboxState.READY)
    pool.park(earlier)
    pool.park(later)
    oldest, newest = Invocation(payload=b"1"), Invocation(payload=b"2")
    pool.enqueue(oldest)
    pool.enqueue(newest)

    assert list(pool.take_pairs()) == [(later, oldest), (earlier, newest)]
