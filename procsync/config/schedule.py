"""When a server is restarted on a timetable (`restart_schedule`): "03:00", "every 6h" or a cron line.

Three forms, parsed by `parse_schedule`:

- a daily time, ``"HH:MM"`` (24 h), in the wall time of the time zone of
  the moment it is asked about (`Schedule.next_after(moment)` reads
  ``moment.tzinfo``; the orchestrator's clock gives UTC unless one is
  injected);
- an interval, ``"every 6h"``, ``"every 30m"``, ``"every 90s"``,
  ``"every 1h30m"`` (units d, h, m, s, each at most once, largest first):
  due that long after the moment asked about (for the orchestrator: after
  each start);
- a five-field cron line, ``minute hour day-of-month month day-of-week``,
  with ``*``, lists ``1,15``, ranges ``1-5``, steps ``*/15``, ``1-30/2`` and
  ``5/15`` (from 5 to the field's end), month names ``jan``..``dec``, day
  names ``sun``..``sat`` (0 and 7 are Sunday), and the macros ``@hourly``,
  ``@daily`` (``@midnight``), ``@weekly``, ``@monthly``, ``@yearly``
  (``@annually``). As in Vixie cron, when both day fields are restricted a
  day matching either one matches; a day field that begins with ``*``
  (``*/2`` too) counts as unrestricted.

Daily and cron times are wall times: a time that does not exist on a
spring-forward day runs at the moment after the gap, and a time that
occurs twice on a fall-back day runs once. Intervals count real elapsed
time. No dependency: the cron arithmetic is a few nested loops over the
allowed values.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .units import whole_number

MAX_INTERVAL = 365 * 24 * 3600  # seconds: longer ones overflow timers (as records.MAX_SECONDS)
SEARCH_YEARS = 50  # how far ahead a cron line is searched (a valid one always matches within 8)

_DAILY = re.compile(r"^(\d{1,2}):(\d{2})$")
_EVERY = re.compile(r"^every\s+(.+)$")
_PART = re.compile(r"(\d+)\s*([dhms])")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}

_MONTHS = {name: i for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_WEEKDAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 0, 7, _WEEKDAYS),  # 7 is Sunday too
)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed `restart_schedule`: `kind` is "daily", "interval" or "cron".

    `every` is the interval in seconds (interval only). Daily and cron keep
    the allowed values of each field (a daily "03:00" is minute {0}, hour
    {3}, every day); `day_or` is True when both day fields are restricted
    (a day matching either matches).
    """

    text: str
    kind: str
    every: int | None = None
    minutes: tuple[int, ...] = ()
    hours: tuple[int, ...] = ()
    days: tuple[int, ...] = ()
    months: tuple[int, ...] = ()
    weekdays: frozenset[int] = frozenset()  # 0 = Sunday .. 6 = Saturday
    day_or: bool = False

    def next_after(self, moment: datetime) -> datetime:
        """The first due time strictly after `moment` (aware), in `moment`'s time zone."""
        if not isinstance(moment, datetime) or moment.tzinfo is None:
            raise ValueError(f"moment must be a timezone-aware datetime, not {moment!r}")
        tz = moment.tzinfo
        if self.every is not None:  # elapsed time, whatever the wall clock does
            return (moment.astimezone(UTC) + timedelta(seconds=self.every)).astimezone(tz)
        after = moment.astimezone(UTC)
        for wall in self._walls(moment.replace(tzinfo=None)):
            due = wall.replace(tzinfo=tz).astimezone(UTC)  # a time in a DST gap: just after it
            if due > after:
                return due.astimezone(tz)
        raise ValueError(f"schedule {self.text!r} has no time in the {SEARCH_YEARS} years after {moment}")

    def describe(self) -> str:
        """The schedule in words, for history and logs: "daily at 03:00", "every 1h30m"."""
        if self.kind == "daily":
            return f"daily at {self.hours[0]:02d}:{self.minutes[0]:02d}"
        if self.kind == "interval" and self.every is not None:
            return f"every {_duration(self.every)}"
        return f"cron '{self.text}'"

    def _walls(self, start: datetime) -> Iterator[datetime]:
        """Matching wall times (naive) from the minute after `start`, in order."""
        first = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for year in range(first.year, first.year + SEARCH_YEARS + 1):
            for month in self.months:
                if (year, month) < (first.year, first.month):
                    continue
                same_month = (year, month) == (first.year, first.month)
                last = calendar.monthrange(year, month)[1]
                for day in range(first.day if same_month else 1, last + 1):
                    if not self._day_matches(year, month, day):
                        continue
                    same_day = same_month and day == first.day
                    for hour in self.hours:
                        if same_day and hour < first.hour:
                            continue
                        same_hour = same_day and hour == first.hour
                        for minute in self.minutes:
                            if same_hour and minute < first.minute:
                                continue
                            yield datetime(year, month, day, hour, minute)

    def _day_matches(self, year: int, month: int, day: int) -> bool:
        in_month = day in self.days
        in_week = (calendar.weekday(year, month, day) + 1) % 7 in self.weekdays  # Monday=0 -> 1
        return (in_month or in_week) if self.day_or else (in_month and in_week)


def parse_schedule(text: str) -> Schedule:
    """Parse a `restart_schedule`; ValueError says exactly what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"must be a time such as '03:00', 'every 6h' or a cron line, not {text!r}")
    line = " ".join(text.split())
    lower = line.lower()
    if match := _DAILY.match(lower):
        hour, minute = int(match.group(1)), int(match.group(2))
        if hour > 23:
            raise ValueError(f"{line!r}: hour {hour} is out of range 0-23")
        if minute > 59:
            raise ValueError(f"{line!r}: minute {minute} is out of range 0-59")
        return Schedule(line, "daily", minutes=(minute,), hours=(hour,), days=tuple(range(1, 32)),
                        months=tuple(range(1, 13)), weekdays=frozenset(range(7)))
    if match := _EVERY.match(lower):
        return Schedule(line, "interval", every=_interval(line, match.group(1)))
    if lower.startswith("@"):
        if lower not in _MACROS:
            raise ValueError(f"{line!r} is not a cron macro (use one of {', '.join(_MACROS)})")
        return _cron(line, _MACROS[lower])
    if len(line.split(" ")) == 1:
        if ":" in line:
            raise ValueError(f"{line!r} is not a time of day: use HH:MM, 24 h, such as '03:00'")
        raise ValueError(f"{line!r} is not a schedule: use a daily time ('03:00'), an interval "
                         "('every 6h', 'every 1h30m') or a five-field cron line ('0 3 * * *')")
    return _cron(line, lower)


def _interval(line: str, spec: str) -> int:
    compact = spec.replace(" ", "")
    parts = _PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{line!r}: {spec!r} is not an interval (use a number and a unit d, h, m "
                         "or s, such as 'every 6h', 'every 30m' or 'every 1h30m')")
    units = [unit for _, unit in parts]
    if len(set(units)) != len(units) or units != sorted(units, key=lambda u: -_UNITS[u]):
        raise ValueError(f"{line!r}: give each unit once, largest first (such as '1h30m')")
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"{line!r}: the interval must be more than 0 seconds")
    if seconds > MAX_INTERVAL:
        raise ValueError(f"{line!r}: the interval must be at most 365 days")
    return seconds


def _cron(line: str, fields_text: str) -> Schedule:
    fields = fields_text.split(" ")
    if len(fields) != 5:
        raise ValueError(f"{line!r}: a cron line has 5 fields (minute hour day-of-month month "
                         f"day-of-week), not {len(fields)}")
    values = [_cron_field(spec, field) for spec, field in zip(_FIELDS, fields, strict=True)]
    minutes, hours, days, months, weekdays = values
    weekdays = {0 if d == 7 else d for d in weekdays}
    day_star, week_star = fields[2].startswith("*"), fields[4].startswith("*")
    day_or = not day_star and not week_star
    if not day_or and not day_star:  # only the day of the month restricts the days
        longest = max(calendar.monthrange(2000, m)[1] for m in months)  # 2000: February has 29
        if min(days) > longest:
            raise ValueError(f"{line!r} never matches: no month of month field {fields[3]!r} has "
                             f"day {min(days)}")
    return Schedule(line, "cron", minutes=tuple(sorted(minutes)), hours=tuple(sorted(hours)),
                    days=tuple(sorted(days)), months=tuple(sorted(months)),
                    weekdays=frozenset(weekdays), day_or=day_or)


def _cron_field(spec: _Field, text: str) -> set[int]:
    """The values one cron field allows; ValueError names the field and the bad part."""
    out: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ValueError(f"{spec.name} field {text!r} has an empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            number = whole_number(step_text)
            if number is None:
                raise ValueError(f"{spec.name} field {item!r}: step {step_text!r} is not a number")
            step = number
            if step == 0:
                raise ValueError(f"{spec.name} field {item!r}: step must be more than 0")
        if base == "*":
            low, high = spec.low, spec.high if spec.name != "day-of-week" else 6
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _cron_value(spec, first, item), _cron_value(spec, last, item)
            if low > high:
                raise ValueError(f"{spec.name} field {item!r} is a backwards range "
                                 f"(write it as {last}-{first}, or as a list)")
        else:
            low = _cron_value(spec, base, item)
            high = (spec.high if spec.name != "day-of-week" else 6) if slash else low
            high = max(high, low)
        out.update(range(low, high + 1, step))
    return out


def _cron_value(spec: _Field, text: str, item: str) -> int:
    value = whole_number(text)
    if value is not None:
        if not spec.low <= value <= spec.high:
            shown = repr(item) if item == text else f"{item!r}: {value}"
            raise ValueError(f"{spec.name} field {shown} is out of range {spec.low}-{spec.high}")
        return value
    if spec.names is not None and text in spec.names:
        return spec.names[text]
    what = f" or a name ({', '.join(spec.names)})" if spec.names else ""
    shown = repr(item) if item == text else f"{item!r}: {text!r}"
    raise ValueError(f"{spec.name} field {shown} is not a number{what}")


def _duration(seconds: int) -> str:
    """`seconds` as "1d2h30m5s" (zero parts left out)."""
    out = []
    for unit, size in _UNITS.items():
        amount, seconds = divmod(seconds, size)
        if amount:
            out.append(f"{amount}{unit}")
    return "".join(out)


__all__ = ["Schedule", "parse_schedule"]
