"""EventBridge schedule expressions, ``rate(...)`` and ``cron(...)``, parsed and evaluated in UTC.

Pure: :func:`parse_schedule` turns an expression into a :class:`Rate` or a :class:`Cron`, and
their ``next_fire(after)`` returns the first fire time strictly after a timezone-aware
``after``; the clock is the caller's. Fire times have minute resolution for ``cron`` and are
always returned in UTC.

Semantics chosen where AWS leaves room:

- ``rate(N unit)`` fires on the grid ``anchor + k * N units`` for every integer ``k``. The
  anchor defaults to the Unix epoch, so ``rate(5 minutes)`` fires at :00, :05, ... and
  ``rate(1 day)`` at midnight UTC; pass the time the schedule was loaded to fire relative to
  it instead. Integer arithmetic on the grid means no drift however many fires have passed.
- ``cron`` follows the AWS field table (and Quartz, which it derives from): ``L`` alone in
  day-of-week is day 7, i.e. every Saturday; ``5L`` is the last Thursday of the month;
  ``3#2`` the second Tuesday; ``15W`` the weekday nearest the 15th without leaving the month
  (``1W`` on a Saturday is Monday the 3rd); ``LW`` the last weekday; ``L-3`` three days before
  the last day. ``nW`` skips months shorter than ``n`` days. ``L``, ``W`` and ``#`` must be
  the only item of their field. Ranges must run low to high (no wrap-around such as
  ``FRI-MON``).
- Searches end with year 2199, the last year AWS accepts; beyond it ``next_fire`` is None.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import TypeAlias

from edgelambda.errors import CronFieldError, ScheduleError

__all__ = [
    "EPOCH",
    "Cron",
    "DayRule",
    "DaysOfMonth",
    "DaysOfWeek",
    "LastDayOfMonth",
    "LastDayOfWeek",
    "LastWeekdayOfMonth",
    "NearestWeekday",
    "NthDayOfWeek",
    "Rate",
    "RateUnit",
    "Schedule",
    "parse_schedule",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""The default anchor of :class:`Rate` grids."""

LAST_YEAR = 2199
"""The last year an EventBridge cron expression may name; searches stop there."""

_SATURDAY = 5  # date.weekday() numbering (Monday 0), used by the W rules
_SUNDAY = 6


# --- rate -------------------------------------------------------------------------------------


class RateUnit(Enum):
    """The units ``rate()`` accepts, valued by their length."""

    MINUTE = timedelta(minutes=1)
    HOUR = timedelta(hours=1)
    DAY = timedelta(days=1)


@dataclass(frozen=True)
class Rate:
    """``rate(value unit)``: fires every ``value`` units on a grid through ``anchor``."""

    expression: str
    value: int
    unit: RateUnit
    anchor: datetime = EPOCH

    @property
    def period(self) -> timedelta:
        """The time between two fires."""
        return self.value * self.unit.value

    def next_fire(self, after: datetime) -> datetime:
        """The first grid point ``anchor + k * period`` strictly after ``after``, in UTC."""
        _require_aware(after)
        # timedelta // timedelta is exact integer arithmetic, so fires never drift off the grid.
        steps = (after - self.anchor) // self.period + 1
        return (self.anchor + steps * self.period).astimezone(UTC)


_RATE_UNITS = {
    "minute": RateUnit.MINUTE,
    "minutes": RateUnit.MINUTE,
    "hour": RateUnit.HOUR,
    "hours": RateUnit.HOUR,
    "day": RateUnit.DAY,
    "days": RateUnit.DAY,
}


def _parse_rate(expression: str, body: str, anchor: datetime) -> Rate:
    parts = body.split()
    if len(parts) != 2:
        raise ScheduleError(f"{expression}: must be rate(value unit), e.g. rate(5 minutes)")
    value_text, unit_text = parts
    if not value_text.isdecimal():
        raise ScheduleError(f"{expression}: value: {value_text!r} is not a whole number")
    value = int(value_text)
    if value < 1:
        raise ScheduleError(f"{expression}: value: must be at least 1")
    unit = _RATE_UNITS.get(unit_text)
    if unit is None:
        choices = ", ".join(_RATE_UNITS)
        raise ScheduleError(f"{expression}: unit: {unit_text!r} is not one of {choices}")
    if (value == 1) == unit_text.endswith("s"):  # AWS: "1 minute", "5 minutes", nothing else
        raise ScheduleError(
            f"{expression}: unit: use a singular unit for 1 and a plural unit otherwise"
        )
    return Rate(expression, value, unit, anchor)


# --- day rules: which days of a given month a cron expression fires on ------------------------


def _aws_day_of_week(day: date) -> int:
    """AWS numbering: 1 is Sunday, 7 is Saturday."""
    return (day.weekday() + 1) % 7 + 1


def _month_length(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


@dataclass(frozen=True)
class DaysOfMonth:
    """Day-of-month values, lists, ranges and steps; days the month lacks are skipped."""

    days: tuple[int, ...]

    def days_in(self, year: int, month: int) -> tuple[int, ...]:
        """The matching days of ``month``, ascending."""
        length = _month_length(year, month)
        return tuple(day for day in self.days if day <= length)


@dataclass(frozen=True)
class LastDayOfMonth:
    """``L`` (offset 0) or ``L-n``: the last day of the month, less ``offset`` days."""

    offset: int = 0

    def days_in(self, year: int, month: int) -> tuple[int, ...]:
        """The matching day of ``month``, if the offset leaves one."""
        day = _month_length(year, month) - self.offset
        return (day,) if day >= 1 else ()


@dataclass(frozen=True)
class NearestWeekday:
    """``nW``: the weekday (Monday-Friday) nearest day ``n``, never leaving the month."""

    day: int

    def days_in(self, year: int, month: int) -> tuple[int, ...]:
        """The matching day of ``month``; none if the month has no day ``n``."""
        length = _month_length(year, month)
        if self.day > length:
            return ()
        weekday = date(year, month, self.day).weekday()
        if weekday == _SATURDAY:
            # Friday before, unless that is last month: then the Monday after.
            return (self.day - 1,) if self.day > 1 else (self.day + 2,)
        if weekday == _SUNDAY:
            # Monday after, unless that is next month: then the Friday before.
            return (self.day + 1,) if self.day < length else (self.day - 2,)
        return (self.day,)


@dataclass(frozen=True)
class LastWeekdayOfMonth:
    """``LW``: the last weekday (Monday-Friday) of the month."""

    def days_in(self, year: int, month: int) -> tuple[int, ...]:
        """The matching day of ``month``."""
        length = _month_length(year, month)
        weekday = date(year, month, length).weekday()
        # Back off one day from a Saturday, two from a Sunday.
        return (length - max(0, weekday - _SATURDAY + 1),)


@dataclass(frozen=True)
class DaysOfWeek:
    """Day-of-week values, lists and ranges (1 is Sunday); ``L`` alone is ``(7,)``."""

    days_of_week: tuple[int, ...]

    def days_in(self, year: int, month: int) -> tuple[int, ...]:
        """The days of ``month`` falling on one of the days of the week, ascending."""
        days = range(1, _month_length(year, month) + 1)
        return tuple(d for d in days if _aws_day_of_week(date(year, month, d)) in self.days_of_week)


@dataclass(frozen=True)
class LastDayOfWeek:
    """``nL``: the last day-of-week ``n`` of the month (``6L`` is the last Friday)."""

    day_of_week: int

    def days_in(self, year: int, month: int) -> tuple[int, ...]:
        """The matching day of ``month``."""
        length = _month_length(year, month)
        last = _aws_day_of_week(date(year, month, length))
        return (length - (last - self.day_of_week) % 7,)


@dataclass(frozen=True)
class NthDayOfWeek:
    """``n#k``: the ``k``-th day-of-week ``n`` of the month (``3#2`` is the second Tuesday)."""

    day_of_week: int
    nth: int

    def days_in(self, year: int, month: int) -> tuple[int, ...]:
        """The matching day of ``month``; none in months without a ``k``-th one."""
        first = 1 + (self.day_of_week - _aws_day_of_week(date(year, month, 1))) % 7
        day = first + 7 * (self.nth - 1)
        return (day,) if day <= _month_length(year, month) else ()


DayRule: TypeAlias = (
    DaysOfMonth
    | LastDayOfMonth
    | NearestWeekday
    | LastWeekdayOfMonth
    | DaysOfWeek
    | LastDayOfWeek
    | NthDayOfWeek
)
"""How a cron expression picks days: from its day-of-month or its day-of-week field."""


# --- cron -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cron:
    """``cron(minutes hours day-of-month month day-of-week year)``, in UTC.

    Each field is held as its ascending allowed values; the day fields as one :data:`DayRule`.
    """

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: DayRule
    months: tuple[int, ...]
    years: tuple[int, ...]

    def next_fire(self, after: datetime) -> datetime | None:
        """The first fire strictly after ``after``, in UTC; None if there is none by 2199."""
        _require_aware(after)
        # Fires are whole minutes, so the earliest candidate is the next whole minute.
        start = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        # Walk month by month over matching days only, then pick the time within the day:
        # years of search cost a few thousand steps, never one per minute.
        for day in self._days_from(start.date()):
            fire = self._first_time_on(day, start)
            if fire is not None:
                return fire
        return None

    def _days_from(self, first: date) -> Iterator[date]:
        for year in self.years[bisect_left(self.years, first.year) :]:
            for month in self.months:
                if (year, month) < (first.year, first.month):
                    continue
                for day in self.days.days_in(year, month):
                    candidate = date(year, month, day)
                    if candidate >= first:
                        yield candidate

    def _first_time_on(self, day: date, start: datetime) -> datetime | None:
        earliest = (start.hour, start.minute) if day == start.date() else (0, 0)
        for hour in self.hours[bisect_left(self.hours, earliest[0]) :]:
            least_minute = earliest[1] if hour == earliest[0] else 0
            index = bisect_left(self.minutes, least_minute)
            if index < len(self.minutes):
                return datetime(day.year, day.month, day.day, hour, self.minutes[index], tzinfo=UTC)
        return None


@dataclass(frozen=True)
class _Field:
    """One cron field's name, bounds, the wildcards AWS allows in it and its value names."""

    label: str
    low: int
    high: int
    wildcards: str
    names: tuple[str, ...] = ()


_MINUTES = _Field("minutes", 0, 59, ",-*/")
_HOURS = _Field("hours", 0, 23, ",-*/")
_DAY_OF_MONTH = _Field("day-of-month", 1, 31, ",-*?/LW")
# Literal names: calendar.month_abbr would follow the host's locale.
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTH = _Field("month", 1, 12, ",-*/", _MONTH_NAMES)
_DAY_OF_WEEK = _Field(
    "day-of-week", 1, 7, ",-*?L#", ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
)
_YEAR = _Field("year", 1970, LAST_YEAR, ",-*/")

_CRON_SHAPE = "cron(minutes hours day-of-month month day-of-week year)"


def _parse_cron(expression: str, body: str) -> Cron:
    texts = body.upper().split()  # names and L/W are case-insensitive
    if len(texts) != 6:
        raise ScheduleError(f"{expression}: must have 6 fields, {_CRON_SHAPE}; got {len(texts)}")
    fields = (_MINUTES, _HOURS, _DAY_OF_MONTH, _MONTH, _DAY_OF_WEEK, _YEAR)
    for text, spec in zip(texts, fields, strict=True):
        _check_wildcards(expression, text, spec)
    minutes, hours, day_of_month, month, day_of_week, year = texts
    return Cron(
        expression,
        minutes=_field_values(expression, minutes, _MINUTES),
        hours=_field_values(expression, hours, _HOURS),
        days=_day_rule(expression, day_of_month, day_of_week),
        months=_field_values(expression, month, _MONTH),
        years=_field_values(expression, year, _YEAR),
    )


def _check_wildcards(expression: str, text: str, spec: _Field) -> None:
    for char in text:
        if not char.isalnum() and char not in spec.wildcards:
            allowed = " ".join(spec.wildcards)
            raise ScheduleError(
                f"{expression}: {spec.label}: {char!r} is not allowed here (allowed: {allowed})"
            )


def _field_values(expression: str, text: str, spec: _Field) -> tuple[int, ...]:
    try:
        return _parse_list(text, spec)
    except CronFieldError as error:
        raise ScheduleError(f"{expression}: {spec.label}: {error}") from None


def _day_rule(expression: str, day_of_month: str, day_of_week: str) -> DayRule:
    if (day_of_month == "?") == (day_of_week == "?"):
        which = "both are" if day_of_month == "?" else "neither is"
        raise ScheduleError(
            f"{expression}: day-of-month, day-of-week: exactly one must be '?', {which}"
        )
    spec, text = (
        (_DAY_OF_WEEK, day_of_week) if day_of_month == "?" else (_DAY_OF_MONTH, day_of_month)
    )
    try:
        if spec is _DAY_OF_WEEK:
            return _day_of_week_rule(text)
        return _day_of_month_rule(text)
    except CronFieldError as error:
        raise ScheduleError(f"{expression}: {spec.label}: {error}") from None


def _day_of_month_rule(text: str) -> DayRule:
    if "L" not in text and "W" not in text:
        return DaysOfMonth(_parse_list(text, _DAY_OF_MONTH))
    _require_alone(text, "'L' and 'W'")
    if text == "LW":
        return LastWeekdayOfMonth()
    if text == "L":
        return LastDayOfMonth()
    if text.startswith("L-"):
        return LastDayOfMonth(_bounded(text[2:], 0, 30, "the offset in 'L-n'"))
    if text.endswith("W") and "L" not in text:
        day = text[:-1]
        if not day.isdecimal():
            raise CronFieldError(f"'W' needs a single day before it, e.g. 15W; got {text!r}")
        return NearestWeekday(_value(day, _DAY_OF_MONTH))
    raise CronFieldError(f"{text!r}: use L, L-n, LW or nW")


def _day_of_week_rule(text: str) -> DayRule:
    if "L" not in text and "#" not in text:
        return DaysOfWeek(_parse_list(text, _DAY_OF_WEEK))
    _require_alone(text, "'L' and '#'")
    if text == "L":  # alone, L is the last day of the week: Saturday
        return DaysOfWeek((7,))
    if "#" in text:
        day, _, nth = text.partition("#")
        return NthDayOfWeek(_value(day, _DAY_OF_WEEK), _bounded(nth, 1, 5, "the n in 'day#n'"))
    if text.endswith("L"):
        return LastDayOfWeek(_value(text[:-1], _DAY_OF_WEEK))
    raise CronFieldError(f"{text!r}: use L, nL or day#n")


def _require_alone(text: str, what: str) -> None:
    if "," in text:
        raise CronFieldError(f"{what} cannot be combined with other values in a list ({text!r})")


def _parse_list(text: str, spec: _Field) -> tuple[int, ...]:
    values: set[int] = set()
    for item in text.split(","):
        values.update(_parse_item(item, spec))
    return tuple(sorted(values))


def _parse_item(item: str, spec: _Field) -> range:
    base, slash, step_text = item.partition("/")
    step = _bounded(step_text, 1, spec.high - spec.low + 1, "the step") if slash else 1
    if base == "*":
        return range(spec.low, spec.high + 1, step)
    if "-" in base:
        first_text, _, last_text = base.partition("-")
        first, last = _value(first_text, spec), _value(last_text, spec)
        if first > last:
            raise CronFieldError(f"range {base!r} must run from low to high")
        return range(first, last + 1, step)
    first = _value(base, spec)
    # "5/15" starts at 5 and steps to the end of the field, as in Quartz.
    return range(first, (spec.high if slash else first) + 1, step)


def _value(text: str, spec: _Field) -> int:
    if text in spec.names:
        return spec.low + spec.names.index(text)
    if text.isdecimal() and spec.low <= int(text) <= spec.high:
        return int(text)
    names = f" or {spec.names[0]}-{spec.names[-1]}" if spec.names else ""
    shown = repr(text) if text else "an empty value"
    raise CronFieldError(f"values must be {spec.low}-{spec.high}{names}, got {shown}")


def _bounded(text: str, low: int, high: int, what: str) -> int:
    if not text.isdecimal() or not low <= int(text) <= high:
        raise CronFieldError(f"{what} must be a number in {low}-{high}, got {text!r}")
    return int(text)


# --- entry point ------------------------------------------------------------------------------

Schedule: TypeAlias = Rate | Cron
"""A parsed schedule expression; both kinds have ``expression`` and ``next_fire(after)``."""

_EXPRESSION = re.compile(r"(rate|cron)\((.*)\)")


def parse_schedule(expression: str, *, anchor: datetime = EPOCH) -> Schedule:
    """Parse an EventBridge ``rate(...)`` or ``cron(...)`` expression.

    ``anchor`` (timezone-aware) places the grid of a ``rate`` schedule; cron ignores it.
    Raises :class:`ScheduleError` naming the field at fault.
    """
    _require_aware(anchor)
    expression = expression.strip()
    match = _EXPRESSION.fullmatch(expression)
    if match is None:
        raise ScheduleError(f"{expression!r}: must be rate(value unit) or {_CRON_SHAPE}")
    kind, body = match.groups()
    if kind == "rate":
        return _parse_rate(expression, body, anchor)
    return _parse_cron(expression, body)


def _require_aware(moment: datetime) -> None:
    # A naive datetime would be read in the host's zone; schedules are UTC by contract.
    if moment.utcoffset() is None:
        raise ValueError(f"{moment!r} must be timezone-aware")
