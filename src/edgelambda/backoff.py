"""Back-off after failures in a row, shared by every loop that retries (pure): the exit
watcher reconnecting to the engine, the log shipper resending, Event invocations retried."""

from __future__ import annotations

from collections.abc import Sequence


def backoff_s(delays_s: Sequence[float], failures: int) -> float:
    """The pause after the ``failures``-th failure in a row (1 for the first): the delays
    in turn, then the last one again for every later failure."""
    return delays_s[min(max(failures, 1), len(delays_s)) - 1]
