"""The pool's decisions as pure functions: no engine, no sleeping."""

from __future__ import annotations

import pytest

from edgelambda.sandbox import (
    FunctionPool,
    Invocation,
    InvocationResult,
    Sandbox,
    SandboxState,
    idle_to_stop,
    sandboxes_to_start,
    stopped_to_remove,
    warm_needed,
)
from tests.fakes import function_spec


def sandbox(state: SandboxState, *, idle_since_s: float = 0.0, stopped_s: float = 0.0) -> Sandbox:
    s = Sandbox(function_spec(), now_s=0.0)
    s.state, s.idle_since_s, s.stopped_s = state, idle_since_s, stopped_s
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


def test_idle_to_stop_picks_ready_sandboxes_past_the_timeout() -> None:
    old = sandbox(SandboxState.READY, idle_since_s=10)
    fresh = sandbox(SandboxState.READY, idle_since_s=95)
    busy = sandbox(SandboxState.BUSY, idle_since_s=0)

    chosen = idle_to_stop([old, fresh, busy], now_s=100, idle_timeout_s=60, min_warm=0)

    assert chosen == [old]


def test_idle_to_stop_keeps_min_warm_running() -> None:
    a = sandbox(SandboxState.READY, idle_since_s=1)
    b = sandbox(SandboxState.READY, idle_since_s=2)
    c = sandbox(SandboxState.READY, idle_since_s=3)

    chosen = idle_to_stop([c, a, b], now_s=1000, idle_timeout_s=60, min_warm=2)

    assert chosen == [a]  # the longest idle goes; two stay warm


def test_stopped_to_remove_after_retention() -> None:
    kept = sandbox(SandboxState.STOPPED, stopped_s=500)
    expired = sandbox(SandboxState.STOPPED, stopped_s=100)
    ready = sandbox(SandboxState.READY, idle_since_s=0)

    assert stopped_to_remove([kept, expired, ready], now_s=700, retention_s=600) == [expired]


def test_warm_needed_counts_only_running_sandboxes() -> None:
    sandboxes = [sandbox(SandboxState.STOPPED), sandbox(SandboxState.STARTING)]

    assert warm_needed(sandboxes, min_warm=3) == 2
    assert warm_needed(sandboxes, min_warm=1) == 0


async def test_a_sandbox_still_streaming_is_not_about_to_be_free() -> None:
    pool = FunctionPool(function_spec(), queue_size=10)
    answered = sandbox(SandboxState.BUSY)
    answered.current = Invocation(payload=b"{}")
    answered.current.result.set_result(InvocationResult(payload=b"{}"))
    pool.sandboxes.add(answered)
    assert pool.coming == 1  # a plain answer: it polls again in a moment

    answered.is_streaming = True

    assert pool.coming == 0  # queued work must start another sandbox meanwhile
