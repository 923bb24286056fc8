"""The console's record of each function's recent work: pure, with the clock passed in."""

from __future__ import annotations

from edgelambda.activity import (
    MAX_SAMPLES,
    RECENT_INVOCATIONS,
    WINDOW_MINUTES,
    Activity,
    InvocationSummary,
    percentile,
)

T0 = 1_800_000_000.0  # a whole minute


def summary(
    time_s: float, *, duration_ms: float = 10.0, outcome: str = "success", cold: bool = False
) -> InvocationSummary:
    return InvocationSummary(
        time_s=time_s,
        request_id=f"r{time_s}",
        trace_id=None,
        outcome=outcome,
        error_type=None if outcome == "success" else "Oops",
        duration_ms=duration_ms,
        is_cold=cold,
        container="c1",
    )


def test_a_series_has_one_value_per_minute_of_the_window_oldest_first() -> None:
    activity = Activity()
    activity.record("fn", summary(T0 + 5, cold=True))
    activity.record("fn", summary(T0 + 65, outcome="error"))
    activity.record("fn", summary(T0 + 70, outcome="timeout"))

    series = activity.series("fn", now_s=T0 + 90)

    assert series["start"] == T0 + 60 - (WINDOW_MINUTES - 1) * 60
    assert series["invocations"] == [0] * (WINDOW_MINUTES - 2) + [1, 2]
    assert series["errors"] == [0] * (WINDOW_MINUTES - 2) + [0, 2]
    assert series["cold_starts"] == [0] * (WINDOW_MINUTES - 2) + [1, 0]
    assert series["p50_ms"] == [None] * (WINDOW_MINUTES - 2) + [10.0, 10.0]


def test_minutes_that_left_the_window_are_not_shown() -> None:
    activity = Activity()
    activity.record("fn", summary(T0))

    series = activity.series("fn", now_s=T0 + WINDOW_MINUTES * 60)

    assert series["invocations"] == [0] * WINDOW_MINUTES


def test_an_invocation_counts_in_the_minute_it_ended() -> None:
    activity = Activity()
    activity.record("fn", summary(T0 + 50, duration_ms=20_000))  # ended at T0 + 70

    assert activity.series("fn", now_s=T0 + 80)["invocations"][-2:] == [0, 1]


def test_percentiles_are_nearest_rank_over_the_minute() -> None:
    activity = Activity()
    for duration in range(1, 101):
        activity.record("fn", summary(T0 + 1, duration_ms=float(duration)))

    series = activity.series("fn", now_s=T0 + 2)

    assert (series["p50_ms"][-1], series["p99_ms"][-1]) == (50.0, 99.0)  # type: ignore[index]
    assert percentile([], 50) is None


def test_a_record_for_a_minute_already_summarised_still_counts() -> None:
    activity = Activity()
    activity.record("fn", summary(T0 + 1, duration_ms=5.0))
    over = activity.series("fn", now_s=T0 + 61)  # the minute is over: summarised
    activity.record("fn", summary(T0 + 2, duration_ms=7.0))  # the clock stepped back

    again = activity.series("fn", now_s=T0 + 61)

    assert (over["invocations"][-2], over["p50_ms"][-2]) == (1, 5.0)  # type: ignore[index]
    assert (again["invocations"][-2], again["p99_ms"][-2]) == (2, 7.0)  # type: ignore[index]


def test_a_busy_minute_keeps_its_latest_samples_only() -> None:
    activity = Activity()
    for _ in range(MAX_SAMPLES):
        activity.record("fn", summary(T0 + 1, duration_ms=1.0))
    for _ in range(MAX_SAMPLES):
        activity.record("fn", summary(T0 + 2, duration_ms=500.0))

    series = activity.series("fn", now_s=T0 + 3)

    assert series["invocations"][-1] == 2 * MAX_SAMPLES  # type: ignore[index]
    assert series["p50_ms"][-1] == 500.0  # type: ignore[index]


def test_recent_invocations_are_newest_first_and_bounded() -> None:
    activity = Activity()
    for n in range(RECENT_INVOCATIONS + 5):
        activity.record("fn", summary(T0 + n))

    recent = activity.recent("fn")

    assert len(recent) == RECENT_INVOCATIONS
    assert recent[0].time_s == T0 + RECENT_INVOCATIONS + 4
    assert activity.recent("other") == []
    assert activity.series("other", T0)["invocations"] == [0] * WINDOW_MINUTES
