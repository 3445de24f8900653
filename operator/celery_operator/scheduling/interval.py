"""Interval schedules ("every 10m") and Go-style duration strings.

An interval schedule fires at ``anchor + k * every`` for k = 1, 2, 3, ...: the first run
is one interval after the anchor (like celery beat, whose interval entries first run
one interval after they start), and the anchor itself never fires. Fire times are
computed from the anchor with integer microseconds in UTC, never as "last run +
interval", so they do not drift with late runs or restarts and ignore DST.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

from celery_operator.scheduling._aware import to_micros, to_utc

__all__ = ["IntervalSchedule", "format_duration", "parse_duration"]

_UNIT_MICROS = {
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
}
# One "<number><unit>" component; "ms" before "m" so "5ms" is not "5m" + "s".
_COMPONENT = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ms|s|m|h|d)")
_MAX_MICROS = to_micros(timedelta.max)


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration such as ``90s``, ``10m``, ``1h30m``, ``1.5h``, ``500ms``.

    Units: ``ms``, ``s``, ``m``, ``h`` and ``d`` (24 h). Components may repeat and carry
    decimals; the sum must be > 0 and a whole number of microseconds. Decimals are
    exact (``0.1s`` is exactly 100 ms). Raises ValueError with a message otherwise.
    """
    if not isinstance(text, str):
        raise ValueError(f"duration must be a string such as '10m', got {text!r}")
    if not text:
        raise ValueError("duration is empty; use e.g. '90s', '10m', '1h30m'")
    total = Fraction(0)
    pos = 0
    while pos < len(text):
        match = _COMPONENT.match(text, pos)
        if match is None:
            raise ValueError(
                f"invalid duration {text!r} at {text[pos:]!r}: use numbers with units "
                "ms, s, m, h or d, e.g. '90s', '10m', '1h30m', '1.5h'"
            )
        total += Fraction(match.group(1)) * _UNIT_MICROS[match.group(2)]
        pos = match.end()
    if total.denominator != 1:
        raise ValueError(f"duration {text!r} is not a whole number of microseconds")
    if total <= 0:
        raise ValueError(f"duration {text!r} must be greater than zero")
    if total > _MAX_MICROS:
        raise ValueError(f"duration {text!r} is too large")
    return timedelta(microseconds=int(total))


def format_duration(td: timedelta) -> str:
    """Format a duration the way :func:`parse_duration` reads it, e.g. ``1h30m``.

    Uses d, h, m, s and either ms or fractional seconds; ``parse_duration`` of the
    result gives ``td`` back. Zero is ``0s``; negative durations raise ValueError.
    """
    micros = to_micros(td)
    if micros < 0:
        raise ValueError(f"cannot format a negative duration {td!r}")
    if micros == 0:
        return "0s"
    days, rest = divmod(micros, _UNIT_MICROS["d"])
    hours, rest = divmod(rest, _UNIT_MICROS["h"])
    minutes, rest = divmod(rest, _UNIT_MICROS["m"])
    seconds, fraction = divmod(rest, _UNIT_MICROS["s"])
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    if fraction == 0:
        if seconds:
            parts.append(f"{seconds}s")
    elif seconds == 0 and fraction % 1_000 == 0:
        parts.append(f"{fraction // 1_000}ms")
    else:
        parts.append(f"{seconds}.{fraction:06d}".rstrip("0") + "s")
    return "".join(parts)


@dataclass(frozen=True)
class IntervalSchedule:
    """Fires at ``anchor + k * every`` for k >= 1 (see the module docstring)."""

    anchor: datetime
    every: timedelta

    def __post_init__(self) -> None:
        to_utc(self.anchor, "anchor")
        if self.every <= timedelta(0):
            raise ValueError(f"interval must be greater than zero, got {self.every!r}")

    def index_after(self, t: datetime) -> int:
        """Return the smallest k >= 1 with ``anchor + k * every > t``."""
        elapsed = to_micros(to_utc(t, "t") - self.anchor)
        if elapsed < 0:
            return 1
        return elapsed // to_micros(self.every) + 1

    def index_at_or_before(self, t: datetime) -> int:
        """Return the largest k with ``anchor + k * every <= t`` (0 or less: none yet)."""
        elapsed = to_micros(to_utc(t, "t") - self.anchor)
        return elapsed // to_micros(self.every)

    def fire_time(self, k: int) -> datetime:
        """Return fire time number ``k`` (aware UTC); OverflowError past year 9999."""
        return to_utc(self.anchor, "anchor") + timedelta(
            microseconds=k * to_micros(self.every)
        )

    def next_after(self, t: datetime) -> datetime:
        """Return the first fire time strictly after ``t``, as an aware UTC datetime."""
        return self.fire_time(self.index_after(t))

    def fire_times(self, after: datetime) -> Iterator[datetime]:
        """Yield the fire times strictly after ``after``, in order, as aware UTC datetimes."""
        k = self.index_after(after)
        while True:
            try:
                fire = self.fire_time(k)
            except OverflowError:
                return
            yield fire
            k += 1
