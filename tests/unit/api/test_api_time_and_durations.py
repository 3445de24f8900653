"""RFC 3339 times and Go-style durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from celery_operator.api import format_duration, format_time, parse_duration, parse_time
from celery_operator.api.timefmt import TimeOutOfRange


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2030-01-01T00:00:00Z", datetime(2030, 1, 1, tzinfo=UTC)),
        ("2030-01-01t00:00:00z", datetime(2030, 1, 1, tzinfo=UTC)),
        ("2030-01-01T09:00:00+09:00", datetime(2030, 1, 1, tzinfo=UTC)),
        ("2029-12-31T20:30:00-03:30", datetime(2030, 1, 1, tzinfo=UTC)),
        ("2030-01-01T00:00:00.5Z", datetime(2030, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC)),
        ("2030-01-01T00:00:00.123456789Z", datetime(2030, 1, 1, 0, 0, 0, 123_456, tzinfo=UTC)),
        ("2028-02-29T00:00:00Z", datetime(2028, 2, 29, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "2030-01-01T00:00:00",  # no offset: ambiguous
        "2030-01-01 00:00:00Z",
        "2030-01-01",
        "2030-02-30T00:00:00Z",
        "2030-01-01T24:00:00Z",
        "2030-01-01T23:59:60Z",
        "2030-1-1T00:00:00Z",
        "2030-01-01T00:00:00+0900",
        "2030-01-01T00:00:00Z\n",
        "tomorrow",
        "",
    ],
)
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_format_time() -> None:
    seoul = timezone(timedelta(hours=9))
    assert format_time(datetime(2030, 1, 1, 9, 0, 0, 999_999, tzinfo=seoul)) == (
        "2030-01-01T00:00:00Z"
    )
    assert format_time(datetime(2030, 1, 1, 0, 0, 0, 250_000, tzinfo=UTC), fraction=True) == (
        "2030-01-01T00:00:00.25Z"
    )
    assert format_time(datetime(2030, 1, 1, tzinfo=UTC), fraction=True) == "2030-01-01T00:00:00Z"
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2030, 1, 1))


_AWARE = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)
)


@given(_AWARE)
def test_time_round_trip(dt: datetime) -> None:
    assert parse_time(format_time(dt, fraction=True)) == dt
    assert parse_time(format_time(dt)) == dt.replace(microsecond=0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("10m", timedelta(minutes=10)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("500ms", timedelta(milliseconds=500)),
        ("1.5h", timedelta(minutes=90)),
        ("1h1h", timedelta(hours=2)),
        ("0.0000001s", timedelta(0)),
        ("2m3s4ms", timedelta(minutes=2, seconds=3, milliseconds=4)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "10", "1d", "1w", "-1s", "+1s", ".5h", "1.h", "1 s", "1us", "1ns", "1H", "1s\n"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(hours=8784), "8784h"),
        (timedelta(microseconds=1), "0.000001s"),
    ],
)
def test_format_duration(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10_000)))
def test_duration_round_trip(delta: timedelta) -> None:
    assert parse_duration(format_duration(delta)) == delta


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-00:01"])
def test_a_date_time_whose_offset_leaves_the_range_is_a_value_error(text: str) -> None:
    with pytest.raises(TimeOutOfRange, match="out of range"):
        parse_time(text)
