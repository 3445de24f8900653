"""When a ScheduledTask is due, when it expires, and how long to wait between retries.

All answers derive from values stored on the object (``spec`` and
``metadata.creationTimestamp``), never from the current time, so an operator restart
recomputes exactly the same due time: a restart never restarts a countdown.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from celery_operator.api.bounds import SECONDS_MAX
from celery_operator.scheduling._aware import to_utc

#: The last representable instant: a due time or expiry beyond it is "never".
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)

__all__ = ["resolve_due_time", "resolve_expiry", "retry_delay"]


def _finite(value: float, name: str) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _after(start: datetime, seconds: float) -> datetime:
    """``start + seconds``, saturating at the end of representable time (year 9999)."""
    try:
        return start + timedelta(seconds=seconds)
    except OverflowError:
        return _END_OF_TIME


def resolve_due_time(
    *, eta: datetime | None, countdown: float | None, created: datetime
) -> datetime:
    """Return the instant (UTC) a task is due.

    ``eta`` wins if given (the API makes ``eta`` and ``countdown`` mutually exclusive);
    otherwise ``created + countdown`` — counted from the object's creationTimestamp, so
    the answer is the same after any restart; otherwise ``created`` itself: an immediate
    task is due at creation, not at "now", for the same reason. A due time in the past
    simply means "run as soon as possible".
    """
    created_utc = to_utc(created, "created")
    if eta is not None:
        return to_utc(eta, "eta")
    if countdown is not None:
        return _after(created_utc, _finite(countdown, "countdown"))
    return created_utc


def resolve_expiry(
    *, expires_seconds: float | None, expires_at: datetime | None, due: datetime
) -> datetime | None:
    """Return the instant (UTC) after which the task must not run, or None.

    ``expires_at`` wins if given; ``expires_seconds`` counts from the due time (not from
    creation or dispatch), so a countdown of 600 s with ``expires: 60`` leaves the
    worker a one-minute window after the due time.
    """
    due_utc = to_utc(due, "due")
    if expires_at is not None:
        return to_utc(expires_at, "expires_at")
    if expires_seconds is not None:
        return _after(due_utc, _finite(expires_seconds, "expires_seconds"))
    return None


def retry_delay(
    attempt: int, *, initial_seconds: float, factor: float, max_seconds: float
) -> timedelta:
    """Return the delay before attempt number ``attempt`` (attempt 1 is the first run).

    Attempt 2 (the first retry) waits ``initial_seconds``; each later attempt multiplies
    the delay by ``factor``; the delay never exceeds ``max_seconds``, nor the API's
    longest duration (100 years), so it can always be added to a time.
    """
    if attempt < 2:
        raise ValueError(f"attempt must be >= 2 (attempt 1 is the first run), got {attempt}")
    initial = _finite(initial_seconds, "initial_seconds")
    growth = _finite(factor, "factor")
    cap = _finite(max_seconds, "max_seconds")
    if initial < 0 or cap < 0:
        raise ValueError("initial_seconds and max_seconds must be >= 0")
    if growth <= 0:
        raise ValueError(f"factor must be > 0, got {factor!r}")
    try:
        delay = initial * growth ** (attempt - 2)
    except OverflowError:
        # A huge attempt number with factor > 1: the cap applies long before this.
        delay = math.inf
    return timedelta(seconds=min(delay, cap, SECONDS_MAX))
