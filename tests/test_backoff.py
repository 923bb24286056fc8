"""Back-off delays after failures in a row."""

from __future__ import annotations

from edgelambda.backoff import backoff_s


def test_back_off_takes_the_delays_in_turn_then_repeats_the_last() -> None:
    delays_s = (0.5, 1.0, 5.0)

    pauses = [backoff_s(delays_s, failures) for failures in range(1, 6)]

    assert pauses == [0.5, 1.0, 5.0, 5.0, 5.0]


def test_back_off_before_any_failure_is_the_first_delay() -> None:
    assert backoff_s((2.0, 4.0), 0) == 2.0
