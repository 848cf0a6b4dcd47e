"""procsync.config.schedule: the `restart_schedule` parser and its due times (no processes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from procsync import ServerConfig
from procsync.config.schedule import Schedule, parse_schedule
from procsync.errors import ConfigError

PLUS2 = timezone(timedelta(hours=2))  # a fixed offset: no DST anywhere in these checks


def at(*parts: int, tz: timezone = UTC) -> datetime:
    return datetime(*parts, tzinfo=tz)  # type: ignore[misc]


def nexts(text: str, moment: datetime, count: int) -> list[datetime]:
    """The next `count` due times of `text` after `moment`."""
    schedule = parse_schedule(text)
    out = []
    for _ in range(count):
        moment = schedule.next_after(moment)
        out.append(moment)
    return out


# ---------------------------------------------------------------- daily


def test_daily_time_is_due_later_the_same_day_or_the_next():
    daily = parse_schedule("03:00")
    assert isinstance(daily, Schedule) and daily.kind == "daily"
    assert daily.describe() == "daily at 03:00"
    assert daily.next_after(at(2025, 1, 1, 2, 59, 58)) == at(2025, 1, 1, 3, 0)
    assert daily.next_after(at(2025, 1, 1, 3, 0, 1)) == at(2025, 1, 2, 3, 0)


def test_next_after_is_strictly_after_a_moment_that_is_itself_due():
    assert parse_schedule("03:00").next_after(at(2025, 1, 1, 3, 0)) == at(2025, 1, 2, 3, 0)
    assert parse_schedule("* * * * *").next_after(at(2025, 1, 1, 3, 0)) == at(2025, 1, 1, 3, 1)


def test_daily_23_59_rolls_over_the_day_the_month_and_the_year():
    assert parse_schedule("23:59").next_after(at(2025, 12, 31, 23, 59, 30)) == at(2026, 1, 1, 23, 59)
    assert parse_schedule("00:00").next_after(at(2025, 1, 31, 23, 59, 59)) == at(2025, 2, 1, 0, 0)
    assert parse_schedule("00:00").next_after(at(2024, 2, 28, 12, 0)) == at(2024, 2, 29, 0, 0)


def test_daily_time_is_the_wall_time_of_the_moments_time_zone():
    # 00:30 UTC is 02:30 at +02:00: "03:00" there is 30 minutes away, 01:00 UTC
    due = parse_schedule("03:00").next_after(at(2025, 6, 1, 0, 30))
    assert due == at(2025, 6, 1, 3, 0)
    local = parse_schedule("03:00").next_after(at(2025, 6, 1, 2, 30, tz=PLUS2))
    assert local == at(2025, 6, 1, 3, 0, tz=PLUS2)
    assert local.utcoffset() == timedelta(hours=2)
    assert local.astimezone(UTC) == at(2025, 6, 1, 1, 0)


def test_one_digit_hour_and_surrounding_space_are_accepted():
    assert parse_schedule(" 3:05 ").next_after(at(2025, 1, 1)) == at(2025, 1, 1, 3, 5)


# ---------------------------------------------------------------- intervals


@pytest.mark.parametrize("text, seconds, words", [
    ("every 6h", 6 * 3600, "every 6h"),
    ("every 30m", 1800, "every 30m"),
    ("every 90s", 90, "every 1m30s"),
    ("every 1h30m", 5400, "every 1h30m"),
    ("Every 1h 30m", 5400, "every 1h30m"),
    ("every 2d", 2 * 86400, "every 2d"),
])
def test_interval_is_due_that_long_after_the_moment(text, seconds, words):
    schedule = parse_schedule(text)
    assert schedule.kind == "interval" and schedule.every == seconds
    assert schedule.describe() == words
    moment = at(2025, 3, 1, 12, 0, 0) + timedelta(microseconds=250)
    assert schedule.next_after(moment) == moment + timedelta(seconds=seconds)


def test_interval_keeps_the_moments_time_zone():
    due = parse_schedule("every 6h").next_after(at(2025, 1, 1, 22, 0, tz=PLUS2))
    assert due == at(2025, 1, 2, 4, 0, tz=PLUS2) and due.utcoffset() == timedelta(hours=2)


# ---------------------------------------------------------------- cron


def test_cron_steps_lists_and_ranges():
    assert nexts("*/15 * * * *", at(2025, 1, 1, 10, 7), 3) == [
        at(2025, 1, 1, 10, 15), at(2025, 1, 1, 10, 30), at(2025, 1, 1, 10, 45)]
    assert nexts("0 8,12-14 * * *", at(2025, 1, 1, 9, 0), 4) == [
        at(2025, 1, 1, 12, 0), at(2025, 1, 1, 13, 0), at(2025, 1, 1, 14, 0), at(2025, 1, 2, 8, 0)]
    assert nexts("10-30/10 0 * * *", at(2025, 1, 1), 3) == [
        at(2025, 1, 1, 0, 10), at(2025, 1, 1, 0, 20), at(2025, 1, 1, 0, 30)]
    assert nexts("50/5 0 * * *", at(2025, 1, 1), 3) == [  # a/n: from a to the field's end
        at(2025, 1, 1, 0, 50), at(2025, 1, 1, 0, 55), at(2025, 1, 2, 0, 50)]


def test_cron_names_and_sunday_as_0_or_7():
    # 2025-01-01 was a Wednesday
    assert nexts("0 9 * * mon-fri", at(2025, 1, 3, 10, 0), 2) == [
        at(2025, 1, 6, 9, 0), at(2025, 1, 7, 9, 0)]
    sundays = [at(2025, 1, 5), at(2025, 1, 12)]
    assert nexts("0 0 * * 0", at(2025, 1, 1), 2) == sundays
    assert nexts("0 0 * * 7", at(2025, 1, 1), 2) == sundays
    assert nexts("0 0 * * SUN", at(2025, 1, 1), 2) == sundays
    assert nexts("0 0 * * 5-7", at(2025, 1, 1), 3) == [at(2025, 1, 3), at(2025, 1, 4), at(2025, 1, 5)]
    assert nexts("0 0 1 jan-mar,dec *", at(2025, 2, 15), 3) == [
        at(2025, 3, 1), at(2025, 12, 1), at(2026, 1, 1)]


def test_cron_day_of_month_or_day_of_week_when_both_are_restricted():
    # "the 13th, and every Friday" (Vixie cron), not "Friday the 13th"
    assert nexts("0 0 13 * fri", at(2025, 1, 1), 4) == [
        at(2025, 1, 3), at(2025, 1, 10), at(2025, 1, 13), at(2025, 1, 17)]
    # a day field written with "*" (a step too) counts as unrestricted: both must match
    # (days 1, 11, 21, 31 that are Mondays)
    assert nexts("0 0 */10 * mon", at(2025, 1, 1), 2) == [at(2025, 3, 31), at(2025, 4, 21)]
    assert nexts("0 0 * * mon", at(2025, 1, 1), 1) == [at(2025, 1, 6)]


def test_cron_feb_29_waits_for_the_next_leap_year():
    assert nexts("0 12 29 2 *", at(2025, 1, 1), 3) == [
        at(2028, 2, 29, 12), at(2032, 2, 29, 12), at(2036, 2, 29, 12)]
    assert nexts("0 12 29 2 *", at(2096, 3, 1), 1) == [at(2104, 2, 29, 12)]  # 2100 is not a leap year


def test_cron_runs_in_the_moments_time_zone():
    due = parse_schedule("30 1 * * *").next_after(at(2025, 1, 1, 0, 0))  # 02:00 at +02:00
    assert due == at(2025, 1, 1, 1, 30)
    local = parse_schedule("30 1 * * *").next_after(at(2025, 1, 1, 2, 0, tz=PLUS2))
    assert local == at(2025, 1, 2, 1, 30, tz=PLUS2)


@pytest.mark.parametrize("macro, line", [
    ("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"), ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
])
def test_cron_macros_are_their_cron_lines(macro, line):
    start = at(2025, 5, 17, 13, 45)
    assert nexts(macro, start, 3) == nexts(line, start, 3)


def test_cron_describe_quotes_the_line():
    assert parse_schedule("0  3 * * 1-5").describe() == "cron '0 3 * * 1-5'"


def test_naive_moment_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_schedule("03:00").next_after(datetime(2025, 1, 1))


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("text, message", [
    ("61 * * * *", "minute field '61' is out of range 0-59"),
    ("0 24 * * *", "hour field '24' is out of range 0-23"),
    ("0 0 0 * *", "day-of-month field '0' is out of range 1-31"),
    ("0 0 * 13 *", "month field '13' is out of range 1-12"),
    ("0 0 * * 8", "day-of-week field '8' is out of range 0-7"),
    ("5-70 * * * *", "minute field '5-70': 70 is out of range 0-59"),
    ("30-10 * * * *", "minute field '30-10' is a backwards range"),
    ("*/0 * * * *", "minute field '*/0': step must be more than 0"),
    ("*/x * * * *", "minute field '*/x': step 'x' is not a number"),
    ("*/\u00b2 * * * *", "minute field '*/\u00b2': step '\u00b2' is not a number"),  # isdigit(), not int()
    ("\u00b2 * * * *", "minute field '\u00b2' is not a number"),
    ("1,,2 * * * *", "minute field '1,,2' has an empty list item"),
    ("0 0 * foo *", "month field 'foo' is not a number or a name (jan, feb"),
    ("0 0 mon * *", "day-of-month field 'mon' is not a number"),
    ("0 0 * * 1-funday", "day-of-week field '1-funday': 'funday' is not a number or a name"),
    ("* * * *", "a cron line has 5 fields (minute hour day-of-month month day-of-week), not 4"),
    ("* * * * * *", "a cron line has 5 fields"),
    ("0 0 31 2 *", "never matches: no month of month field '2' has day 31"),
    ("0 0 31 apr,jun *", "never matches"),
    ("24:00", "'24:00': hour 24 is out of range 0-23"),
    ("12:60", "'12:60': minute 60 is out of range 0-59"),
    ("3:0", "'3:0' is not a time of day: use HH:MM"),
    ("every", "'every' is not a schedule"),
    ("every 0s", "the interval must be more than 0 seconds"),
    ("every 6", "'6' is not an interval"),
    ("every 1.5h", "'1.5h' is not an interval"),
    ("every 6 hours", "'6 hours' is not an interval"),
    ("every 30m1h", "give each unit once, largest first"),
    ("every 1h1h", "give each unit once, largest first"),
    ("every 366d", "the interval must be at most 365 days"),
    ("@reboot", "'@reboot' is not a cron macro"),
    ("tomorrow", "'tomorrow' is not a schedule: use a daily time"),
    ("", "must be a time such as '03:00'"),
    ("   ", "must be a time such as '03:00'"),
])
def test_errors_say_exactly_what_is_wrong(text, message):
    with pytest.raises(ValueError) as caught:
        parse_schedule(text)
    assert message in str(caught.value)


def test_a_non_string_is_refused():
    with pytest.raises(ValueError, match="must be a time such as"):
        parse_schedule(300)  # type: ignore[arg-type]


def test_server_config_names_the_server_and_the_field():
    with pytest.raises(ConfigError) as caught:
        ServerConfig(name="web", command="true", restart_schedule="0 0 * * 9")
    text = str(caught.value)
    assert "'web'" in text and "restart_schedule" in text
    assert "day-of-week field '9' is out of range 0-7" in text
    assert ServerConfig(command="true", restart_schedule="every 6h").restart_schedule == "every 6h"
