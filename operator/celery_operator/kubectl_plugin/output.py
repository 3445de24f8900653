"""What a verb shows: a text form (the default) and data for `-o json|yaml`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

import yaml

from celery_operator.api import format_duration, format_time

FORMATS = ("table", "json", "yaml")
NONE = "-"  # an empty cell, as kubectl prints <none> only for printer columns


@dataclass(frozen=True)
class Shown:
    text: str
    data: Any
    note: str | None = None  # a line for stderr: stdout stays the answer alone


class Refused(Exception):
    """The verb does not apply, or cannot be done: one line, exit status 1."""


def render(shown: Shown, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(shown.data, indent=2, ensure_ascii=False)
    if fmt == "yaml":
        return yaml.safe_dump(shown.data, sort_keys=False, allow_unicode=True).rstrip("\n")
    return shown.text


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns as kubectl prints them: left-aligned, three spaces apart."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows,
                                                                        strict=True)]
    lines = ["   ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True))
             .rstrip() for line in (headers, *rows)]
    return "\n".join(lines)


def local_time(moment: datetime, zone: tzinfo) -> str:
    """`2026-12-02 02:30:00 CET` (the zone's abbreviation at that instant)."""
    local = moment.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"


def zone_name(zone: tzinfo, at: datetime) -> str:
    """An IANA name when the zone has one, else its abbreviation at `at`."""
    return str(getattr(zone, "key", None) or at.astimezone(zone).tzname())


def utc(moment: datetime | None) -> str:
    return format_time(moment) if moment is not None else NONE


def span(delta: timedelta) -> str:
    """A signed duration to the millisecond: "312ms", "1m5.25s", "-2s"."""
    rounded = timedelta(milliseconds=round(delta / timedelta(milliseconds=1)))
    if rounded < timedelta(0):
        return "-" + format_duration(-rounded)
    return format_duration(rounded)


def until(moment: datetime, now: datetime) -> str:
    """How long from now: "in 12m30s", "in 5h47m", "in 2d5h47m", or "3m ago" (seconds
    only under an hour, where they matter)."""
    seconds = round((moment - now).total_seconds())
    left = abs(seconds) if abs(seconds) < 3600 else abs(seconds) // 60 * 60
    days, rest = divmod(left, 86400)
    text = (f"{days}d" if days else "") + (format_duration(timedelta(seconds=rest))
                                          if rest or not days else "")
    return f"in {text}" if seconds >= 0 else f"{text} ago"
