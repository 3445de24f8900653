"""IANA time zone names, as PeriodicTask schedules and app defaults accept them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from celery_operator.api._fields import Reader, join

TIME_ZONE_PATTERN = "^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$"
_TIME_ZONE = re.compile(TIME_ZONE_PATTERN)


def read_time_zone(reader: Reader, raw: Mapping[str, Any], path: str) -> str | None:
    """raw["timeZone"] when it names a zone this host knows; None (error recorded) if not.

    None without an error when the field is unset.
    """
    name = reader.string(
        raw,
        "timeZone",
        path,
        pattern=_TIME_ZONE,
        pattern_message="must be an IANA time zone name such as UTC or Europe/Berlin",
    )
    if name is None:
        return None
    field = join(path, "timeZone")
    # "localtime" resolves to whatever zone the operator's host or image has.
    if name == "localtime":
        reader.error(field, f'unknown time zone "{name}"')
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        reader.error(field, f'unknown time zone "{name}"')
        return None
    return name
