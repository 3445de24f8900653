"""spec.expires, shared by ScheduledTask and PeriodicTask: when an unstarted task expires.

Either an integer number of seconds after the task's due time, or an RFC 3339 date-time.
A PeriodicTask passes its `expires` to every run unchanged; a run is due at its nominal
fire time, so the seconds count from each fire time (Celery beat adds `expires` to the
time it sends the entry). The CRDs carry the same schema for both kinds (a unit test
checks they are identical and match these messages).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from celery_operator.api._fields import Reader, describe, join
from celery_operator.api.bounds import SECONDS_MAX
from celery_operator.api.timefmt import format_time, looks_like_time

EXPIRES_MESSAGE = (
    "must be a number of seconds greater than or equal to 0, or an RFC 3339 date-time "
    "such as 2030-01-01T09:00:00Z"
)
EXPIRES_SECONDS_MESSAGE = f"must be at most {SECONDS_MAX} seconds"


def read_expires(
    reader: Reader, spec: Mapping[str, Any], path: str
) -> tuple[float | None, datetime | None]:
    """(seconds after the due time, absolute time) of `spec.expires`; at most one is set."""
    value = spec.get("expires")
    field = join(path, "expires")
    if value is None:
        return None, None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            reader.error(field, f"Invalid value: {value}: {EXPIRES_MESSAGE}")
            return None, None
        if value > SECONDS_MAX:
            reader.error(field, f"Invalid value: {value}: {EXPIRES_SECONDS_MESSAGE}")
            return None, None
        return float(value), None
    if isinstance(value, str):
        if not looks_like_time(value):
            reader.error(field, f'Invalid value: "{value}": {EXPIRES_MESSAGE}')
            return None, None
        return None, reader.time_text(field, value)
    reader.error(field, f"Invalid value: {describe(value)}: {EXPIRES_MESSAGE}")
    return None, None


def render_expires(seconds: float | None, at: datetime | None) -> int | str | None:
    """The raw `expires` value for what read_expires returned; None when unset."""
    if seconds is not None:
        return int(seconds)
    if at is not None:
        return format_time(at, fraction=True)
    return None
