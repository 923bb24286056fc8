"""Each function's recent work, as the console shows it: its last invocations, and per-minute
counts over the last :data:`WINDOW_MINUTES` (invocations, errors, cold starts, p50 and p99
duration). In memory only, bounded, and cheap to record: it is written for every invocation.
The clock is passed in."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

WINDOW_MINUTES = 15
RECENT_INVOCATIONS = 50  # per function
# Per function and minute, percentiles are taken over at most this many durations (the most
# recent ones: a busier minute overwrites its oldest samples).
MAX_SAMPLES = 1024
COLUMNS = ("invocations", "errors", "cold_starts", "p50_ms", "p99_ms")


# Not frozen: one is made for every invocation, and a frozen dataclass sets each field through
# object.__setattr__ (1.0 µs here against 0.24 µs).
@dataclass(slots=True)
class InvocationSummary:
    """One concluded invocation, as the function detail page lists it."""

    time_s: float  # epoch s when it reached its container
    request_id: str
    trace_id: str | None
    outcome: str  # success | error | timeout | crash (see edgelambda.metrics.outcome)
    error_type: str | None
    duration_ms: float
    is_cold: bool
    container: str  # the container id, short

    def as_json(self) -> dict[str, object]:
        return {
            "time": self.time_s,
            "request_id": self.request_id,
            "trace_id": self.trace_id,
            "outcome": self.outcome,
            "error_type": self.error_type,
            "duration_ms": round(self.duration_ms, 3),
            "cold": self.is_cold,
            "container": self.container,
        }


class _Minute:
    """One minute's counts of one function."""

    __slots__ = ("cold_starts", "durations_ms", "errors", "invocations", "minute", "summary")

    def __init__(self, minute: int) -> None:
        self.minute = minute  # epoch minutes
        self.invocations = 0
        self.errors = 0  # anything but success: errors, timeouts, crashes
        self.cold_starts = 0
        self.durations_ms: list[float] = []
        self.summary: dict[str, object] | None = None  # kept once the minute is over

    def add(self, summary: InvocationSummary) -> None:
        self.summary = None
        if len(self.durations_ms) < MAX_SAMPLES:
            self.durations_ms.append(summary.duration_ms)
        else:  # the oldest sample makes room
            self.durations_ms[self.invocations % MAX_SAMPLES] = summary.duration_ms
        self.invocations += 1
        self.errors += summary.outcome != "success"
        self.cold_starts += summary.is_cold

    def as_json(self, *, is_over: bool) -> dict[str, object]:
        if self.summary is not None:
            return self.summary
        ordered = sorted(self.durations_ms)
        summary: dict[str, object] = {
            "invocations": self.invocations,
            "errors": self.errors,
            "cold_starts": self.cold_starts,
            "p50_ms": percentile(ordered, 50),
            "p99_ms": percentile(ordered, 99),
        }
        if is_over:  # kept, and its samples let go (a late record starts them again)
            self.summary, self.durations_ms = summary, []
        return summary


def percentile(ordered: list[float], rank: float) -> float | None:
    """The nearest-rank percentile of sorted values (None for none), rounded to µs."""
    if not ordered:
        return None
    index = max(0, math.ceil(rank / 100 * len(ordered)) - 1)
    return round(ordered[index], 3)


class FunctionActivity:
    """The recent invocations and per-minute counts of one function."""

    __slots__ = ("_minutes", "recent")

    def __init__(self) -> None:
        self.recent: deque[InvocationSummary] = deque(maxlen=RECENT_INVOCATIONS)
        self._minutes: deque[_Minute] = deque(maxlen=WINDOW_MINUTES)

    def record(self, summary: InvocationSummary) -> None:
        self.recent.append(summary)
        # Counted in the minute it ended: invocations conclude in that order.
        minute = int((summary.time_s + summary.duration_ms / 1000) // 60)
        if not self._minutes or self._minutes[-1].minute < minute:
            self._minutes.append(_Minute(minute))
        self._minutes[-1].add(summary)

    def series(self, now_s: float) -> dict[str, object]:
        """The window ending with ``now_s``'s minute, one value per minute, oldest first,
        by column; minutes without invocations are zeros (and None for the percentiles)."""
        current = int(now_s // 60)
        kept = {m.minute: m for m in self._minutes}
        minutes = [
            kept[minute].as_json(is_over=minute < current) if minute in kept else _empty_minute()
            for minute in range(current - WINDOW_MINUTES + 1, current + 1)
        ]
        columns: dict[str, object] = {"start": (current - WINDOW_MINUTES + 1) * 60}
        for column in COLUMNS:
            columns[column] = [minute[column] for minute in minutes]
        return columns


def _empty_minute() -> dict[str, object]:
    return {
        "invocations": 0,
        "errors": 0,
        "cold_starts": 0,
        "p50_ms": None,
        "p99_ms": None,
    }


class Activity:
    """:class:`FunctionActivity` by function name. A function removed from the routing
    table keeps its history until the gateway restarts (at most its bounded size)."""

    def __init__(self) -> None:
        self._functions: dict[str, FunctionActivity] = {}

    def record(self, function: str, summary: InvocationSummary) -> None:
        activity = self._functions.get(function)
        if activity is None:
            activity = self._functions[function] = FunctionActivity()
        activity.record(summary)

    def series(self, function: str, now_s: float) -> dict[str, object]:
        activity = self._functions.get(function)
        return (activity or FunctionActivity()).series(now_s)

    def recent(self, function: str) -> list[InvocationSummary]:
        """The function's last invocations, newest first."""
        activity = self._functions.get(function)
        return [] if activity is None else list(reversed(activity.recent))
