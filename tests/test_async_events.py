"""The pure retry policy of asynchronous events, with time passed in."""

from __future__ import annotations

import pytest

from edgelambda.async_events import (
    DeadLetter,
    DeadLetterReason,
    QueuedEvent,
    Retry,
    RetryPolicy,
    decide_after_failure,
)

POLICY = RetryPolicy(delays_s=(60.0, 120.0), max_age_s=21600.0)


def event(attempts: int, enqueued_at_s: float = 0.0) -> QueuedEvent:
    return QueuedEvent(
        id="e",
        function="fn",
        payload=b"{}",
        trace_id=None,
        attempts=attempts,
        enqueued_at_s=enqueued_at_s,
        next_attempt_at_s=enqueued_at_s,
        last_error=None,
    )


@pytest.mark.parametrize(
    ("attempts", "enqueued_at_s", "now_s", "policy", "expected"),
    [
        (1, 0.0, 5.0, POLICY, Retry(65.0)),
        (2, 0.0, 70.0, POLICY, Retry(190.0)),
        (3, 0.0, 200.0, POLICY, DeadLetter(DeadLetterReason.RETRIES_EXHAUSTED)),
        (4, 0.0, 200.0, POLICY, DeadLetter(DeadLetterReason.RETRIES_EXHAUSTED)),
        (1, 0.0, 21600.0, POLICY, DeadLetter(DeadLetterReason.EVENT_TOO_OLD)),
        # the retry would start after the maximum age: no point scheduling it
        (1, 0.0, 50.0, RetryPolicy(max_age_s=100.0), DeadLetter(DeadLetterReason.EVENT_TOO_OLD)),
        (1, 0.0, 40.0, RetryPolicy(max_age_s=100.0), Retry(100.0)),
        (1, 0.0, 0.0, RetryPolicy(delays_s=()), DeadLetter(DeadLetterReason.RETRIES_EXHAUSTED)),
        (1, 0.0, 0.0, RetryPolicy(delays_s=(0.1, 0.2)), Retry(0.1)),
    ],
)
def test_decide_after_failure(
    attempts: int, enqueued_at_s: float, now_s: float, policy: RetryPolicy, expected: object
) -> None:
    assert decide_after_failure(event(attempts, enqueued_at_s), policy, now_s) == expected
