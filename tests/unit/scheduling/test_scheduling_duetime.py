"""Due time, expiry and retry backoff for ScheduledTask."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from celery_operator.scheduling import resolve_due_time, resolve_expiry, retry_delay

CREATED = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
SEOUL = timezone(timedelta(hours=9))


def test_immediate_task_is_due_at_creation_not_now() -> None:
    assert resolve_due_time(eta=None, countdown=None, created=CREATED) == CREATED


def test_countdown_counts_from_creation() -> None:
    due = resolve_due_time(eta=None, countdown=600, created=CREATED)
    assert due == CREATED + timedelta(minutes=10)
    # Fractional countdowns keep their precision.
    assert resolve_due_time(eta=None, countdown=0.25, created=CREATED) == CREATED + timedelta(
        milliseconds=250
    )


def test_eta_wins_and_is_normalised_to_utc() -> None:
    eta = datetime(2026, 5, 2, 9, 0, tzinfo=SEOUL)
    due = resolve_due_time(eta=eta, countdown=600, created=CREATED)
    assert due == eta
    assert due.tzinfo is UTC
    assert due.hour == 0


def test_restart_gives_the_same_answer() -> None:
    first = resolve_due_time(eta=None, countdown=3600, created=CREATED)
    again = resolve_due_time(eta=None, countdown=3600, created=CREATED)
    assert first == again


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        resolve_due_time(eta=None, countdown=None, created=datetime(2026, 5, 1))
    with pytest.raises(ValueError, match="eta"):
        resolve_due_time(eta=datetime(2026, 5, 1), countdown=None, created=CREATED)
    with pytest.raises(ValueError, match="due"):
        resolve_expiry(expires_seconds=1, expires_at=None, due=datetime(2026, 5, 1))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_countdown_is_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        resolve_due_time(eta=None, countdown=bad, created=CREATED)


def test_expiry_counts_from_due_time() -> None:
    due = CREATED + timedelta(minutes=10)
    assert resolve_expiry(expires_seconds=60, expires_at=None, due=due) == due + timedelta(
        minutes=1
    )
    at = datetime(2026, 5, 3, tzinfo=SEOUL)
    assert resolve_expiry(expires_seconds=None, expires_at=at, due=due) == at
    assert resolve_expiry(expires_seconds=None, expires_at=None, due=due) is None


@pytest.mark.parametrize(
    ("attempt", "seconds"),
    [(2, 10), (3, 20), (4, 40), (5, 80), (10, 600), (10_000, 600)],
)
def test_retry_delay_backs_off_and_caps(attempt: int, seconds: float) -> None:
    delay = retry_delay(attempt, initial_seconds=10, factor=2, max_seconds=600)
    assert delay == timedelta(seconds=seconds)


def test_retry_delay_constant_factor() -> None:
    assert retry_delay(7, initial_seconds=5, factor=1, max_seconds=600) == timedelta(seconds=5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempt": 1, "initial_seconds": 1, "factor": 2, "max_seconds": 10},
        {"attempt": 2, "initial_seconds": -1, "factor": 2, "max_seconds": 10},
        {"attempt": 2, "initial_seconds": 1, "factor": 0, "max_seconds": 10},
        {"attempt": 2, "initial_seconds": 1, "factor": 2, "max_seconds": math.nan},
    ],
)
def test_retry_delay_rejects_bad_input(kwargs: dict[str, float]) -> None:
    attempt = int(kwargs.pop("attempt"))
    with pytest.raises(ValueError):
        retry_delay(attempt, **kwargs)


END_OF_TIME = datetime.max.replace(tzinfo=UTC)


def test_a_due_time_or_expiry_past_year_9999_is_never_not_a_crash() -> None:
    # The schema refuses these; a spec built in code may still carry them.
    created = datetime(2030, 1, 1, tzinfo=UTC)
    assert resolve_due_time(eta=None, countdown=1e15, created=created) == END_OF_TIME
    due = datetime(8999, 12, 31, tzinfo=UTC)
    assert resolve_expiry(expires_seconds=1e15, expires_at=None, due=due) == END_OF_TIME
    assert resolve_expiry(expires_seconds=60, expires_at=None, due=due) == due + timedelta(
        seconds=60
    )


def test_retry_delay_never_exceeds_a_century() -> None:
    delay = retry_delay(100, initial_seconds=1e300, factor=1e300, max_seconds=1e308)
    assert delay == timedelta(seconds=3_153_600_000)
    assert datetime(2030, 1, 1, tzinfo=UTC) + delay == datetime(2129, 12, 8, tzinfo=UTC)
