"""Cron schedules pinned to real dates, DST included, and the celery crontab mapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

import pytest

from celery_operator.scheduling import (
    CronSchedule,
    celery_crontab_expression,
    validate_cron,
    validate_time_zone,
)

BERLIN = ZoneInfo("Europe/Berlin")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def take(schedule: CronSchedule, after: datetime, n: int) -> list[datetime]:
    return list(islice(schedule.fire_times(after), n))


def test_weekly_in_seoul_fires_sunday_evening_utc() -> None:
    schedule = CronSchedule("30 7 * * 1", "Asia/Seoul")
    fires = take(schedule, utc(2026, 3, 4), 3)
    assert fires == [utc(2026, 3, 8, 22, 30), utc(2026, 3, 15, 22, 30), utc(2026, 3, 22, 22, 30)]
    assert all(f.weekday() == 6 and f.tzinfo is UTC for f in fires)  # Sunday in UTC


def test_berlin_spring_forward_runs_at_first_valid_minute() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
    fires = take(CronSchedule("30 2 * * *", "Europe/Berlin"), utc(2026, 3, 27, 12), 3)
    assert fires == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST: once, right after the gap
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]
    assert fires[1].astimezone(BERLIN).strftime("%H:%M %Z") == "03:00 CEST"


def test_berlin_fall_back_fires_once() -> None:
    # 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
    fires = take(CronSchedule("30 2 * * *", "Europe/Berlin"), utc(2026, 10, 23, 12), 3)
    assert fires == [
        utc(2026, 10, 24, 0, 30),
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST, the first occurrence only
        utc(2026, 10, 26, 1, 30),  # 02:30 CET
    ]


def test_start_inside_the_repeated_hour_never_goes_back() -> None:
    # 01:15 UTC is 02:15 CET, after 02:30 CEST has already fired.
    schedule = CronSchedule("30 2 * * *", "Europe/Berlin")
    assert schedule.next_after(utc(2026, 10, 25, 1, 15)) == utc(2026, 10, 26, 1, 30)


def test_wildcard_hour_follows_elapsed_time_across_dst() -> None:
    hourly = CronSchedule("@hourly", "Europe/Berlin")
    assert take(hourly, utc(2026, 10, 24, 23, 30), 4) == [
        utc(2026, 10, 25, 0),  # 02:00 CEST
        utc(2026, 10, 25, 1),  # 02:00 CET
        utc(2026, 10, 25, 2),
        utc(2026, 10, 25, 3),
    ]
    assert take(hourly, utc(2026, 3, 28, 23, 30), 3) == [
        utc(2026, 3, 29, 0),  # 01:00 CET
        utc(2026, 3, 29, 1),  # 03:00 CEST
        utc(2026, 3, 29, 2),
    ]


def test_wildcard_minute_in_fixed_hour_repeats_and_skips_with_dst() -> None:
    schedule = CronSchedule("*/30 2 * * *", "Europe/Berlin")
    fall_day = utc(2026, 10, 25).date()
    fall = [f for f in take(schedule, utc(2026, 10, 24, 12), 6) if f.date() == fall_day]
    assert len(fall) == 4
    spring = take(schedule, utc(2026, 3, 28, 12), 1)
    assert spring == [utc(2026, 3, 30, 0)]  # nothing on 2026-03-29


def test_hourly_macro_in_utc() -> None:
    assert take(CronSchedule("@hourly"), utc(2026, 1, 1, 10, 20), 2) == [
        utc(2026, 1, 1, 11),
        utc(2026, 1, 1, 12),
    ]


@pytest.mark.parametrize(
    ("macro", "first"),
    [
        ("@yearly", utc(2027, 1, 1)),
        ("@annually", utc(2027, 1, 1)),
        ("@monthly", utc(2026, 5, 1)),
        ("@weekly", utc(2026, 4, 19)),  # Sunday
        ("@daily", utc(2026, 4, 16)),
        ("@midnight", utc(2026, 4, 16)),
        ("@HOURLY", utc(2026, 4, 15, 11)),
    ],
)
def test_macros(macro: str, first: datetime) -> None:
    assert CronSchedule(macro).next_after(utc(2026, 4, 15, 10, 5)) == first


def test_day_of_month_or_day_of_week_when_both_restricted() -> None:
    april = [f.day for f in take(CronSchedule("0 0 13 * 5"), utc(2026, 4, 1), 10) if f.month == 4]
    assert april == [3, 10, 13, 17, 24]  # Fridays, and Monday the 13th
    only_13th = take(CronSchedule("0 0 13 * *"), utc(2026, 4, 1), 2)
    assert [f.day for f in only_13th] == [13, 13]
    fridays = take(CronSchedule("0 0 * * fri"), utc(2026, 4, 1), 2)
    assert [f.day for f in fridays] == [3, 10]


def test_next_after_is_strictly_after() -> None:
    schedule = CronSchedule("0 * * * *")
    assert schedule.next_after(utc(2026, 1, 1, 10)) == utc(2026, 1, 1, 11)
    just_before = utc(2026, 1, 1, 10) - timedelta(microseconds=1)
    assert schedule.next_after(just_before) == utc(2026, 1, 1, 10)
    assert schedule.next_after(utc(2026, 1, 1, 10) + timedelta(microseconds=1)) == utc(
        2026, 1, 1, 11
    )


def test_accepts_any_aware_input_and_rejects_naive() -> None:
    schedule = CronSchedule("30 7 * * 1", "Asia/Seoul")
    local = datetime(2026, 3, 4, 9, 0, tzinfo=BERLIN)
    assert schedule.next_after(local) == utc(2026, 3, 8, 22, 30)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_after(datetime(2026, 3, 4))


@pytest.mark.parametrize(
    ("expression", "time_zone"),
    [("61 * * * *", "UTC"), ("@reboot", "UTC"), ("0 0 * * *", "Mars/Olympus"), ("", "UTC")],
)
def test_construction_validates(expression: str, time_zone: str) -> None:
    with pytest.raises(ValueError):
        CronSchedule(expression, time_zone)


@pytest.mark.parametrize(
    "expression",
    ["* * * * *", "30 7 * * 1", "0 9 * * MON-FRI", "0 0 L * *", "0 0 * * 5L", "0 0 * * 1#2",
     "  0   0 * * *  ", "@weekly", "0 0 29 2 *", "0 0 * * 7"],
)
def test_validate_cron_accepts(expression: str) -> None:
    assert validate_cron(expression) is None


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("", "empty"),
        ("* * * *", "must have 5 fields"),
        ("0 * * * * *", "must have 5 fields"),
        ("60 * * * *", "minute field '60'"),
        ("0 24 * * *", "hour field '24'"),
        ("0 0 32 * *", "day-of-month field '32'"),
        ("0 0 30 2 *", "day-of-month"),
        ("0 0 * 13 *", "month field '13'"),
        ("0 0 * * 8", "day-of-week field '8'"),
        ("0 0 * * sunday", "day-of-week field 'sunday'"),
        ("@reboot", "unsupported cron macro"),
        ("TZ=UTC 0 0 * * *", "timeZone"),
    ],
)
def test_validate_cron_explains(expression: str, fragment: str) -> None:
    message = validate_cron(expression)
    assert message is not None
    assert fragment in message


def test_validate_time_zone() -> None:
    assert validate_time_zone("Asia/Seoul") is None
    assert validate_time_zone("UTC") is None
    for bad in ("", "utc", "Europe/Nowhere", "../etc/passwd", "/etc/localtime"):
        message = validate_time_zone(bad)
        assert message is not None and "time zone" in message


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"hour": 7, "minute": 30, "day_of_week": 1}, "30 7 * * 1"),
        ({}, "* * * * *"),
        ({"minute": 0, "hour": 0}, "0 0 * * *"),
        ({"minute": "*/15"}, "*/15 * * * *"),
        ({"minute": "0,30", "hour": "9-17"}, "0,30 9-17 * * *"),
        ({"minute": 0, "hour": "*/3"}, "0 */3 * * *"),
        ({"minute": 0, "hour": 0, "day_of_week": "sun"}, "0 0 * * 0"),
        ({"minute": 0, "hour": 0, "day_of_week": "Sunday"}, "0 0 * * 0"),
        ({"minute": 0, "hour": 9, "day_of_week": "mon-fri"}, "0 9 * * 1-5"),
        ({"minute": 0, "hour": 9, "day_of_week": "mon,wed,fri"}, "0 9 * * 1,3,5"),
        ({"minute": 0, "hour": 9, "day_of_week": "sat,sun"}, "0 9 * * 0,6"),
        ({"minute": 0, "hour": 9, "day_of_week": "fri-mon"}, "0 9 * * 0,1,5,6"),
        ({"minute": 0, "hour": 9, "day_of_week": "0-6"}, "0 9 * * *"),
        ({"minute": 0, "hour": "22-2"}, "0 0-2,22,23 * * *"),
        ({"minute": "1-30/10"}, "1,11,21 * * * *"),
        ({"minute": [0, 15], "hour": {8, 20}}, "0,15 8,20 * * *"),
        ({"minute": 0, "hour": 0, "day_of_month": "1,15"}, "0 0 1,15 * *"),
        ({"minute": 0, "hour": 0, "day_of_month": 1, "month_of_year": "*/3"}, "0 0 1 */3 *"),
        ({"minute": 0, "hour": 0, "day_of_month": 1, "month_of_year": "jan,jul"}, "0 0 1 1,7 *"),
        ({"minute": 0, "hour": 0, "day_of_week": "1", "day_of_month": "1-31"}, "0 0 * * 1"),
        ({"minute": 0, "hour": 9, "day_of_week": "fri", "day_of_month": 13}, "0 9 13 * 5"),
    ],
)
def test_celery_crontab_mapping(fields: dict[str, object], expected: str) -> None:
    expression = celery_crontab_expression(**fields)  # type: ignore[arg-type]
    assert expression == expected
    assert validate_cron(expression) is None


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"minute": 60}, "minute: 60 is outside 0-59"),
        ({"minute": -1}, "outside"),
        ({"hour": "24"}, "hour: 24 is outside 0-23"),
        ({"day_of_week": 7}, "day_of_week: 7 is outside 0-6"),
        ({"day_of_week": "funday"}, "day name"),
        ({"month_of_year": "smarch"}, "month name"),
        ({"minute": ""}, "empty"),
        ({"minute": "1,,2"}, "empty item"),
        ({"minute": "*/0"}, "step"),
        ({"minute": "*/"}, "step"),
        ({"minute": "5/15"}, "5-59/15"),
        ({"minute": []}, "empty"),
        ({"minute": True}, "minute"),
        ({"day_of_month": 31, "month_of_year": 2}, "unusable"),
    ],
)
def test_celery_crontab_mapping_rejects(fields: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        celery_crontab_expression(**fields)  # type: ignore[arg-type]
