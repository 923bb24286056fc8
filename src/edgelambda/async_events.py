"""Asynchronous (``Event``) invocations: what a queued event is, and what happens after a
failed attempt.

An event is acknowledged to its caller (202) only after the durable queue
(:class:`~edgelambda.event_queue.EventQueue`) has committed it to one SQLite file, so a gateway
killed at any moment loses nothing. Each event is ``queued`` until due, ``running`` while a
worker (:class:`~edgelambda.event_worker.EventWorker`) holds it, and deleted once it succeeds.
A failure is retried on AWS's schedule (two retries, about 1 then 2 minutes) until it succeeds,
runs out of attempts or grows older than the maximum event age; then it moves to the
dead-letter table, where the CLI can list and replay it for as long as
:class:`DeadLetterRetention` keeps it. Each function may hold a bounded number of queued
events (the Invoke API answers ``TooManyRequestsException`` beyond it).

Delivery is at-least-once: an event that was ``running`` when the previous process died is
queued again by :meth:`~edgelambda.event_queue.EventQueue.recover` and may run a second time,
as in AWS.

This module holds the values and the policy (:func:`decide_after_failure`), all pure; the
queue only stores and moves rows, with every time passed in, so tests never sleep.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from edgelambda.backoff import backoff_s


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
class DeadLetterRetention:
    """How long dead letters are kept and how many at most; beyond either, the oldest are
    dropped. 14 days is SQS's longest message retention (``MessageRetentionPeriod``
    1,209,600 s), the longest an AWS on-failure queue would keep one."""

    max_age_s: float = 1_209_600.0
    max_count: int = 10_000


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
