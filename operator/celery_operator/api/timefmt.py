"""RFC 3339 timestamps as the API server writes and accepts them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

# What the API server accepts for `format: date-time` (kube-openapi strfmt.IsDateTime):
# a full date, 'T', hh:mm:ss, optional fraction, and 'Z' or a ±hh:mm offset, case-insensitive.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?([Zz]|[+-]\d{2}:\d{2})"
)


class TimeOutOfRange(ValueError):
    """An RFC 3339 date-time whose instant lies outside what datetime can hold."""


def looks_like_time(text: str) -> bool:
    """True when `text` has the shape of an RFC 3339 date-time (its values unchecked)."""
    return _RFC3339.fullmatch(text) is not None


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 date-time into an aware UTC datetime; raise ValueError otherwise.

    Fractions finer than a microsecond are truncated; leap seconds (:60) are rejected,
    as the API server does.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 date-time: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    if zone in ("Z", "z"):
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        if offset >= timedelta(hours=24):
            raise ValueError(f"not an RFC 3339 date-time: {text!r} (offset out of range)")
        tz = timezone(sign * offset)
    try:
        parsed = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz
        )
    except ValueError as exc:
        raise ValueError(f"not an RFC 3339 date-time: {text!r} ({exc})") from None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        # The offset moves year 1 or 9999 out of range ("0001-01-01T00:00:00+01:00").
        raise TimeOutOfRange(f"date-time out of range: {text!r}") from None


def format_time(dt: datetime, *, fraction: bool = False) -> str:
    """Format an aware datetime as `YYYY-MM-DDTHH:MM:SSZ` in UTC.

    Sub-second digits are dropped (truncated) unless `fraction` is true, which keeps them
    when there are any (`...:05.25Z`), for values that must survive a round trip.
    """
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt!r}: pass an aware datetime")
    utc = dt.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction and utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"
