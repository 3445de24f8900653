"""Go-style durations and interval schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from itertools import islice

import pytest

from celery_operator.scheduling import IntervalSchedule, format_duration, parse_duration

ANCHOR = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("10m", timedelta(minutes=10)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("500ms", timedelta(milliseconds=500)),
        ("2h45m30s", timedelta(hours=2, minutes=45, seconds=30)),
        ("1d", timedelta(days=1)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("0.1s", timedelta(milliseconds=100)),
        (".5s", timedelta(milliseconds=500)),
        ("1.s", timedelta(seconds=1)),
        ("30m1h", timedelta(hours=1, minutes=30)),
        ("1ms", timedelta(milliseconds=1)),
        ("0.001ms", timedelta(microseconds=1)),
        ("0h5m", timedelta(minutes=5)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("10", "invalid duration"),
        ("m", "invalid duration"),
        ("10 m", "invalid duration"),
        (" 10m", "invalid duration"),
        ("10M", "invalid duration"),
        ("-10m", "invalid duration"),
        ("+10m", "invalid duration"),
        ("10us", "invalid duration"),
        ("1w", "invalid duration"),
        ("1h 30m", "invalid duration"),
        ("0s", "greater than zero"),
        ("0h0m", "greater than zero"),
        ("0.0001ms", "whole number of microseconds"),
        ("99999999999d", "too large"),
        ("1e3s", "invalid duration"),
        ("\u0661\u0660m", "invalid duration"),  # Arabic-Indic digits are not ASCII digits
    ],
)
def test_parse_duration_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_duration(text)


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(seconds=1, milliseconds=500), "1.5s"),
        (timedelta(days=2, seconds=1), "2d1s"),
        (timedelta(microseconds=1), "0.000001s"),
        (timedelta(hours=1, milliseconds=250), "1h250ms"),
        (timedelta(0), "0s"),
    ],
)
def test_format_duration(td: timedelta, text: str) -> None:
    assert format_duration(td) == text
    if td:
        assert parse_duration(text) == td


def test_format_duration_rejects_negative() -> None:
    with pytest.raises(ValueError):
        format_duration(timedelta(seconds=-1))


def test_first_fire_is_one_interval_after_anchor() -> None:
    schedule = IntervalSchedule(ANCHOR, timedelta(minutes=10))
    before = ANCHOR - timedelta(days=3)
    assert schedule.next_after(before) == ANCHOR + timedelta(minutes=10)
    assert schedule.next_after(ANCHOR) == ANCHOR + timedelta(minutes=10)


def test_next_after_is_strictly_after_and_on_the_grid() -> None:
    schedule = IntervalSchedule(ANCHOR, timedelta(minutes=10))
    assert schedule.next_after(ANCHOR + timedelta(minutes=20)) == ANCHOR + timedelta(minutes=30)
    late = ANCHOR + timedelta(minutes=20, seconds=7)  # a late run does not shift the grid
    assert schedule.next_after(late) == ANCHOR + timedelta(minutes=30)


def test_no_drift_over_a_long_series() -> None:
    every = timedelta(seconds=1, microseconds=333_333)
    schedule = IntervalSchedule(ANCHOR, every)
    far = ANCHOR + timedelta(days=3650, microseconds=17)
    fire = schedule.next_after(far)
    k = (fire - ANCHOR) // every
    assert fire == ANCHOR + k * every
    assert fire - every <= far < fire


def test_interval_ignores_dst() -> None:
    berlin_anchor = datetime(2026, 3, 29, 0, 0, tzinfo=timezone(timedelta(hours=1)))
    schedule = IntervalSchedule(berlin_anchor, timedelta(hours=1))
    fires = list(islice(schedule.fire_times(berlin_anchor), 4))
    assert [f - berlin_anchor for f in fires] == [timedelta(hours=h) for h in range(1, 5)]
    assert all(f.tzinfo is UTC for f in fires)


def test_interval_validation() -> None:
    with pytest.raises(ValueError, match="greater than zero"):
        IntervalSchedule(ANCHOR, timedelta(0))
    with pytest.raises(ValueError, match="timezone-aware"):
        IntervalSchedule(datetime(2026, 1, 1), timedelta(seconds=1))
    with pytest.raises(ValueError, match="timezone-aware"):
        IntervalSchedule(ANCHOR, timedelta(seconds=1)).next_after(datetime(2026, 1, 1))


def test_fire_times_end_before_year_10000() -> None:
    anchor = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)
    fires = list(IntervalSchedule(anchor, timedelta(minutes=20)).fire_times(anchor))
    assert len(fires) == 2
