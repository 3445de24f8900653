"""Go-style durations for PeriodicTask intervals: "90s", "10m", "1h30m", "1.5h", "500ms".

The grammar is exactly what the CRD accepts (INTERVAL_PATTERN): numbers with units
h, m, s or ms, no sign, no days. It is a subset of Go's time.ParseDuration and of CEL's
duration(), which the CRD uses to check the bounds.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

# Shared with the CRD rule on spec.schedule.interval (a unit test checks they match).
INTERVAL_PATTERN = "^([0-9]+([.][0-9]+)?(h|m|s|ms))+$"

_INTERVAL = re.compile(INTERVAL_PATTERN)
_TERM = re.compile(r"([0-9]+(?:[.][0-9]+)?)(h|ms|m|s)")
_MICROSECONDS = {"h": 3_600_000_000, "m": 60_000_000, "s": 1_000_000, "ms": 1_000}


def parse_duration(text: str) -> timedelta:
    """Parse a duration such as "1h30m" into a timedelta; raise ValueError otherwise.

    Fractions below a microsecond are truncated.
    """
    if not _INTERVAL.fullmatch(text):
        raise ValueError(
            f"invalid duration {text!r}: use numbers with units h, m, s or ms, e.g. 90s, 1h30m"
        )
    micros = sum(Decimal(number) * _MICROSECONDS[unit] for number, unit in _TERM.findall(text))
    return timedelta(microseconds=int(micros))


def format_duration(delta: timedelta) -> str:
    """Format a non-negative timedelta the way parse_duration reads it: "1h30m", "1m0.5s"."""
    if delta < timedelta(0):
        raise ValueError(f"negative duration {delta!r}")
    micros = delta // timedelta(microseconds=1)
    if micros == 0:
        return "0s"
    hours, rest = divmod(micros, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if rest:
        seconds = Decimal(rest) / 1_000_000
        if seconds < 1 and rest % 1_000 == 0:
            parts.append(f"{rest // 1_000}ms")
        else:
            parts.append(f"{seconds.normalize():f}s")
    return "".join(parts)
