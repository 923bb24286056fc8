"""EventBridge schedule expressions: parsing, next fire times and precise errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from edgelambda.errors import ScheduleError
from edgelambda.schedule import (
    EPOCH,
    Cron,
    DaysOfWeek,
    LastDayOfMonth,
    NearestWeekday,
    NthDayOfWeek,
    Rate,
    RateUnit,
    parse_schedule,
)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def next_cron(expression: str, after: datetime) -> datetime | None:
    schedule = parse_schedule(expression)
    assert isinstance(schedule, Cron)
    return schedule.next_fire(after)


# Expected fires worked out by hand from the calendar (weekday of each date noted).
CRON_CASES = [
    # Every day at noon; strictly after, so a fire at `after` itself does not count.
    ("cron(0 12 * * ? *)", utc(2024, 3, 15, 11, 59, 59), utc(2024, 3, 15, 12)),
    ("cron(0 12 * * ? *)", utc(2024, 3, 15, 12), utc(2024, 3, 16, 12)),
    # Last Friday of the month, 2022-2026: Fridays of March 2024 are 1, 8, 15, 22, 29.
    ("cron(15 10 ? * 6L 2022-2026)", utc(2024, 3, 1), utc(2024, 3, 29, 10, 15)),
    # December 2026: Fridays 4, 11, 18, 25.
    ("cron(15 10 ? * 6L 2022-2026)", utc(2026, 12, 25, 10, 14), utc(2026, 12, 25, 10, 15)),
    # Friday 2024-03-15 18:00 -> Monday 18th.
    ("cron(0 18 ? * MON-FRI *)", utc(2024, 3, 15, 18), utc(2024, 3, 18, 18)),
    ("cron(0 18 ? * mon-fri *)", utc(2024, 3, 13, 9), utc(2024, 3, 13, 18)),
    ("cron(0 8 1 * ? *)", utc(2024, 1, 31, 23, 59), utc(2024, 2, 1, 8)),
    ("cron(0 8 1 * ? *)", utc(2024, 12, 1, 8), utc(2025, 1, 1, 8)),
    ("cron(0/15 * * * ? *)", utc(2024, 3, 15, 10, 7, 30), utc(2024, 3, 15, 10, 15)),
    ("cron(0/15 * * * ? *)", utc(2024, 3, 15, 23, 45), utc(2024, 3, 16, 0, 0)),
    ("cron(5/15 * * * ? *)", utc(2024, 3, 15, 10, 50), utc(2024, 3, 15, 11, 5)),
    # Friday 23:55 -> Monday 00:00; Wednesday 09:10 -> 09:20.
    ("cron(0/10 * ? * MON-FRI *)", utc(2024, 3, 15, 23, 55), utc(2024, 3, 18, 0, 0)),
    ("cron(0/10 * ? * MON-FRI *)", utc(2024, 3, 13, 9, 10), utc(2024, 3, 13, 9, 20)),
    ("cron(*/20 8-10 * * ? *)", utc(2024, 3, 15, 10, 40), utc(2024, 3, 16, 8, 0)),
    # Last day of the month: February of a leap year, of a common year, a 31-day month.
    ("cron(0 0 L * ? *)", utc(2024, 2, 1), utc(2024, 2, 29)),
    ("cron(0 0 L * ? *)", utc(2025, 2, 1), utc(2025, 2, 28)),
    ("cron(0 0 L * ? *)", utc(2024, 4, 30), utc(2024, 5, 31)),
    ("cron(0 0 L-2 * ? *)", utc(2024, 2, 1), utc(2024, 2, 27)),
    # 15W: June 15 2024 is a Saturday -> Friday 14th; September 15 2024 a Sunday -> Monday 16th.
    ("cron(0 9 15W * ? *)", utc(2024, 6, 1), utc(2024, 6, 14, 9)),
    ("cron(0 9 15W * ? *)", utc(2024, 9, 1), utc(2024, 9, 16, 9)),
    ("cron(0 9 15W * ? *)", utc(2024, 6, 14, 9), utc(2024, 7, 15, 9)),  # a Monday
    # 1W: June 1 2024 is a Saturday -> Monday 3rd (never back into May).
    ("cron(0 9 1W * ? *)", utc(2024, 5, 2), utc(2024, 6, 3, 9)),
    # September 1 2024 is a Sunday -> Monday 2nd.
    ("cron(0 9 1W * ? *)", utc(2024, 8, 2), utc(2024, 9, 2, 9)),
    # 31W: March 31 2024 is a Sunday -> Friday 29th (never forward into April).
    ("cron(0 9 31W * ? *)", utc(2024, 3, 1), utc(2024, 3, 29, 9)),
    # ... and months without a 31st are skipped: April -> May 31 2024, a Friday.
    ("cron(0 9 31W * ? *)", utc(2024, 4, 1), utc(2024, 5, 31, 9)),
    # LW: March 31 2024 is a Sunday -> 29th; November 30 2024 a Saturday -> 29th;
    # August 31 2026 a Monday.
    ("cron(0 9 LW * ? *)", utc(2024, 3, 1), utc(2024, 3, 29, 9)),
    ("cron(0 9 LW * ? *)", utc(2024, 11, 1), utc(2024, 11, 29, 9)),
    ("cron(0 9 LW * ? *)", utc(2026, 8, 1), utc(2026, 8, 31, 9)),
    # Second Tuesday: March 2024 Tuesdays 5, 12; April 2024 Tuesdays 2, 9.
    ("cron(0 10 ? * 3#2 *)", utc(2024, 3, 1), utc(2024, 3, 12, 10)),
    ("cron(0 10 ? * 3#2 *)", utc(2024, 3, 12, 10), utc(2024, 4, 9, 10)),
    ("cron(0 0 ? * FRI#3 *)", utc(2024, 3, 1), utc(2024, 3, 15)),
    # Fifth Monday: none in March 2024; April 29 2024; then none in May or June; July 29.
    ("cron(0 10 ? * 2#5 *)", utc(2024, 3, 1), utc(2024, 4, 29, 10)),
    ("cron(0 10 ? * 2#5 *)", utc(2024, 4, 29, 10), utc(2024, 7, 29, 10)),
    # L alone in day-of-week is Saturday: Monday March 4 2024 -> Saturday 9th.
    ("cron(0 12 ? * L *)", utc(2024, 3, 4), utc(2024, 3, 9, 12)),
    ("cron(0 0 1 1 ? 2030)", utc(2024, 3, 15), utc(2030, 1, 1)),
    ("cron(0 0 1 1 ? 2030/10)", utc(2030, 1, 1), utc(2040, 1, 1)),
    ("cron(30 23 31 12 ? *)", utc(2024, 6, 1), utc(2024, 12, 31, 23, 30)),
    ("cron(30 23 31 12 ? *)", utc(2024, 12, 31, 23, 30), utc(2025, 12, 31, 23, 30)),
    # February 29: 2024 has just fired, 2028 is the next leap year.
    ("cron(0 0 29 2 ? *)", utc(2024, 2, 29), utc(2028, 2, 29)),
    ("cron(0 0 29 2 ? *)", utc(2025, 1, 1), utc(2028, 2, 29)),
    ("cron(0 0 1 JAN,JUL ? *)", utc(2024, 1, 1), utc(2024, 7, 1)),
    ("cron(0 0 1 jan,Jul ? *)", utc(2024, 7, 1), utc(2025, 1, 1)),
    ("cron(0 0 1 1/3 ? *)", utc(2024, 4, 1), utc(2024, 7, 1)),
    ("cron(0 0 31 * ? *)", utc(2024, 4, 1), utc(2024, 5, 31)),
    # Friday 2024-03-15 -> Sunday 17th; Sunday 17th 09:00 -> Wednesday 20th.
    ("cron(0 9 ? * SUN,WED *)", utc(2024, 3, 15), utc(2024, 3, 17, 9)),
    ("cron(0 9 ? * 1,4 *)", utc(2024, 3, 17, 9), utc(2024, 3, 20, 9)),
    ("cron(0 0 1 1 ? *)", utc(2198, 6, 1), utc(2199, 1, 1)),
]


@pytest.mark.parametrize(("expression", "after", "expected"), CRON_CASES)
def test_cron_next_fire(expression: str, after: datetime, expected: datetime) -> None:
    assert next_cron(expression, after) == expected


@pytest.mark.parametrize(
    ("expression", "after"),
    [
        ("cron(0 0 1 1 ? 2030)", utc(2030, 1, 1)),
        ("cron(0 0 * * ? 2020-2022)", utc(2024, 3, 15)),
        ("cron(15 10 ? * 6L 2022-2026)", utc(2026, 12, 25, 10, 15)),
        ("cron(0 0 1 1 ? *)", utc(2199, 1, 1)),
        ("cron(0 0 30 2 ? *)", utc(2024, 1, 1)),  # never: searched to 2199 without a fire
    ],
)
def test_cron_without_a_future_fire(expression: str, after: datetime) -> None:
    assert next_cron(expression, after) is None


def test_cron_fires_are_whole_minutes_after_seconds() -> None:
    after = utc(2024, 3, 15, 12) + timedelta(microseconds=1)
    assert next_cron("cron(0 12 * * ? *)", after) == utc(2024, 3, 16, 12)


def test_cron_reads_other_zones_as_utc_and_answers_in_utc() -> None:
    after = datetime(2024, 3, 15, 13, 30, tzinfo=timezone(timedelta(hours=2)))  # 11:30 UTC
    fire = next_cron("cron(0 12 * * ? *)", after)
    assert fire == utc(2024, 3, 15, 12)
    assert fire is not None
    assert fire.tzinfo is UTC


def test_consecutive_cron_fires() -> None:
    schedule = parse_schedule("cron(0 18 ? * MON-FRI *)")
    fires = [utc(2024, 3, 14, 19)]  # a Thursday evening
    for _ in range(3):
        fire = schedule.next_fire(fires[-1])
        assert fire is not None
        fires.append(fire)
    assert fires[1:] == [utc(2024, 3, 15, 18), utc(2024, 3, 18, 18), utc(2024, 3, 19, 18)]


def test_cron_parse_result() -> None:
    schedule = parse_schedule("  cron(0/20 9-11 ? * 3#2 2024,2026)  ")
    assert schedule == Cron(
        "cron(0/20 9-11 ? * 3#2 2024,2026)",
        minutes=(0, 20, 40),
        hours=(9, 10, 11),
        days=NthDayOfWeek(day_of_week=3, nth=2),
        months=tuple(range(1, 13)),
        years=(2024, 2026),
    )


@pytest.mark.parametrize(
    ("expression", "days"),
    [
        ("cron(0 0 L * ? *)", LastDayOfMonth(0)),
        ("cron(0 0 L-3 * ? *)", LastDayOfMonth(3)),
        ("cron(0 0 15w * ? *)", NearestWeekday(15)),
        ("cron(0 0 ? * l *)", DaysOfWeek((7,))),
        ("cron(0 0 ? * * *)", DaysOfWeek((1, 2, 3, 4, 5, 6, 7))),
    ],
)
def test_cron_day_rules(expression: str, days: object) -> None:
    schedule = parse_schedule(expression)
    assert isinstance(schedule, Cron)
    assert schedule.days == days


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_schedule("cron(0 12 * * ? *)").next_fire(datetime(2024, 3, 15))
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_schedule("rate(1 day)", anchor=datetime(2024, 3, 15))


# --- rate -------------------------------------------------------------------------------------


def test_rate_parse_result() -> None:
    schedule = parse_schedule("rate(5 minutes)")
    assert schedule == Rate("rate(5 minutes)", 5, RateUnit.MINUTE, EPOCH)
    assert schedule.period == timedelta(minutes=5)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # The default anchor is the epoch, so the grid lines up with the clock.
        ("rate(1 minute)", utc(2024, 3, 15, 10, 7, 30), utc(2024, 3, 15, 10, 8)),
        ("rate(5 minutes)", utc(2024, 3, 15, 10, 7, 30), utc(2024, 3, 15, 10, 10)),
        ("rate(5 minutes)", utc(2024, 3, 15, 10, 10), utc(2024, 3, 15, 10, 15)),
        ("rate(2 hours)", utc(2024, 3, 15, 9, 59), utc(2024, 3, 15, 10)),
        ("rate(1 day)", utc(2024, 3, 15, 10), utc(2024, 3, 16)),
    ],
)
def test_rate_next_fire_on_the_epoch_grid(
    expression: str, after: datetime, expected: datetime
) -> None:
    assert parse_schedule(expression).next_fire(after) == expected


def test_rate_grid_runs_through_the_anchor_both_ways() -> None:
    schedule = parse_schedule("rate(2 hours)", anchor=utc(2024, 3, 15, 9, 30))
    assert schedule.next_fire(utc(2024, 3, 15, 10)) == utc(2024, 3, 15, 11, 30)
    assert schedule.next_fire(utc(2024, 3, 15, 9, 30)) == utc(2024, 3, 15, 11, 30)
    assert schedule.next_fire(utc(2024, 3, 15, 8)) == utc(2024, 3, 15, 9, 30)


def test_rate_answers_in_utc_for_an_anchor_in_another_zone() -> None:
    anchor = datetime(2024, 3, 15, 6, tzinfo=timezone(timedelta(hours=2)))  # 04:00 UTC
    fire = parse_schedule("rate(1 day)", anchor=anchor).next_fire(utc(2024, 3, 20, 5))
    assert fire == utc(2024, 3, 21, 4)
    assert fire is not None
    assert fire.tzinfo is UTC


@pytest.mark.parametrize(
    ("expression", "period"),
    [
        ("rate(1 minute)", timedelta(minutes=1)),
        ("rate(5 minutes)", timedelta(minutes=5)),
        ("rate(2 hours)", timedelta(hours=2)),
        ("rate(1 day)", timedelta(days=1)),
    ],
)
def test_rate_fires_stay_on_the_grid_without_drift(expression: str, period: timedelta) -> None:
    anchor = datetime(2024, 3, 15, 9, 17, 23, 456789, tzinfo=UTC)
    schedule = parse_schedule(expression, anchor=anchor)
    fire = schedule.next_fire(anchor)
    assert fire == anchor + period
    for _ in range(999):
        following = schedule.next_fire(fire)
        assert following is not None
        assert following - fire == period
        fire = following
    assert fire == anchor + 1000 * period
    # Asking from just before a fire lands on it, not one period later.
    assert schedule.next_fire(fire - timedelta(microseconds=1)) == fire


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "fragments"),
    [
        ("cron(0 12 * * ?)", ["must have 6 fields", "got 5"]),
        ("cron(0 12 * * ? * *)", ["must have 6 fields", "got 7"]),
        ("cron(0 12 ? * ? *)", ["day-of-month, day-of-week", "exactly one", "both are"]),
        ("cron(0 12 * * * *)", ["day-of-month, day-of-week", "exactly one", "neither is"]),
        ("cron(0 12 5 * MON *)", ["day-of-month, day-of-week", "neither is"]),
        ("cron(60 12 * * ? *)", ["minutes:", "0-59", "'60'"]),
        ("cron(0 24 * * ? *)", ["hours:", "0-23", "'24'"]),
        ("cron(0 0 32 * ? *)", ["day-of-month:", "1-31", "'32'"]),
        ("cron(0 0 0 * ? *)", ["day-of-month:", "1-31", "'0'"]),
        ("cron(0 0 1 13 ? *)", ["month:", "1-12", "'13'"]),
        ("cron(0 0 ? * 8 *)", ["day-of-week:", "1-7", "'8'"]),
        ("cron(0 0 1 1 ? 1969)", ["year:", "1970-2199", "'1969'"]),
        ("cron(0 0 1 1 ? 2200)", ["year:", "1970-2199", "'2200'"]),
        ("cron(0 0 1 JANUARY ? *)", ["month:", "'JANUARY'", "JAN-DEC"]),
        ("cron(0 0 1 MON ? *)", ["month:", "'MON'"]),
        ("cron(0 0 ? * MOX *)", ["day-of-week:", "'MOX'", "SUN-SAT"]),
        ("cron(0 0 ? * JAN *)", ["day-of-week:", "'JAN'"]),
        ("cron(0 0 L,15 * ? *)", ["day-of-month:", "cannot be combined", "'L,15'"]),
        ("cron(0 0 15W,20 * ? *)", ["day-of-month:", "cannot be combined"]),
        ("cron(0 0 ? * 6L,2 *)", ["day-of-week:", "cannot be combined"]),
        ("cron(0 0 ? * 3#2,4 *)", ["day-of-week:", "cannot be combined"]),
        ("cron(0 0 ? * 3#6 *)", ["day-of-week:", "1-5", "'6'"]),
        ("cron(0 0 ? * 3#0 *)", ["day-of-week:", "1-5", "'0'"]),
        ("cron(0 0 ? * 8#2 *)", ["day-of-week:", "1-7", "'8'"]),
        ("cron(0 0 1-15W * ? *)", ["day-of-month:", "'W' needs a single day", "'1-15W'"]),
        ("cron(0 0 */2W * ? *)", ["day-of-month:", "'W' needs a single day"]),
        ("cron(0 0 32W * ? *)", ["day-of-month:", "1-31", "'32'"]),
        ("cron(0 0 L-31 * ? *)", ["day-of-month:", "L-n", "0-30"]),
        ("cron(0 0 LX * ? *)", ["day-of-month:", "'LX'"]),
        ("cron(0 0 ? * 2-6L *)", ["day-of-week:", "'2-6'"]),
        ("cron(L 0 * * ? *)", ["minutes:", "'L'"]),
        ("cron(? 0 * * ? *)", ["minutes:", "'?' is not allowed"]),
        ("cron(0 0 1 1# ? *)", ["month:", "'#' is not allowed"]),
        ("cron(0 0 ? * 1/2 *)", ["day-of-week:", "'/' is not allowed"]),
        ("cron(0 0 1 * ? 2024#1)", ["year:", "'#' is not allowed"]),
        ("cron(0/0 * * * ? *)", ["minutes:", "step", "'0'"]),
        ("cron(*/61 * * * ? *)", ["minutes:", "step", "'61'"]),
        ("cron(0 0 ? * FRI-MON *)", ["day-of-week:", "'FRI-MON'", "low to high"]),
        ("cron(0 0 1,,2 * ? *)", ["day-of-month:", "empty value"]),
        ("cron(0 0 5- * ? *)", ["day-of-month:", "empty value"]),
        ("rate(0 minutes)", ["value:", "at least 1"]),
        ("rate(1 minutes)", ["unit:", "singular", "plural"]),
        ("rate(5 minute)", ["unit:", "singular", "plural"]),
        ("rate(5 weeks)", ["unit:", "'weeks'", "minute, minutes, hour, hours, day, days"]),
        ("rate(five minutes)", ["value:", "'five'"]),
        ("rate(-5 minutes)", ["value:", "'-5'"]),
        ("rate(5)", ["rate(value unit)"]),
        ("rate()", ["rate(value unit)"]),
        ("every 5 minutes", ["'every 5 minutes'", "rate(value unit) or cron("]),
        ("", ["rate(value unit) or cron("]),
        ("cron 0 12 * * ? *", ["rate(value unit) or cron("]),
        ("RATE(5 minutes)", ["rate(value unit) or cron("]),
    ],
)
def test_invalid_expressions_are_rejected_precisely(expression: str, fragments: list[str]) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(expression)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message


def test_schedule_errors_are_value_errors_that_quote_the_expression() -> None:
    with pytest.raises(ValueError, match=r"^cron\(0 0 L,15 \* \? \*\): day-of-month: "):
        parse_schedule("cron(0 0 L,15 * ? *)")
