"""Helpers shared by the scheduling modules: every instant is timezone-aware."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

#: The resolution of :class:`datetime.datetime`; used to turn "≥ x" into "> x - tick".
TICK = timedelta(microseconds=1)


def to_utc(value: datetime, name: str) -> datetime:
    """Return ``value`` converted to UTC; raise ValueError if it is naive.

    A naive datetime has no defined instant, and silently assuming the local zone
    is how schedules end up an hour off, so it is rejected outright.
    """
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def optional_utc(value: datetime | None, name: str) -> datetime | None:
    """Like :func:`to_utc`, passing ``None`` through."""
    return None if value is None else to_utc(value, name)


def to_micros(delta: timedelta) -> int:
    """Return ``delta`` as an exact integer number of microseconds."""
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
