"""The neutral form of one schedule entry, whatever its source."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


class SourceError(Exception):
    """The source cannot be read at all (app import, database, Redis); the message says why."""


class SkipEntry(Exception):
    """This entry cannot be converted faithfully; the message says why (for the report)."""


@dataclass(frozen=True)
class CronPlan:
    """A Celery crontab's fields as a five-field expression, in `time_zone`.

    Written as `schedule.crontab`, which fires on the wall clock as celery beat does."""

    expression: str
    time_zone: str


@dataclass(frozen=True)
class IntervalPlan:
    """Every `every`, counted from when the schedule starts."""

    every: timedelta


@dataclass(frozen=True)
class ClockedPlan:
    """Once, at `at` (django-celery-beat's ClockedSchedule): a ScheduledTask."""

    at: datetime


Plan = CronPlan | IntervalPlan | ClockedPlan


@dataclass(frozen=True)
class Entry:
    """One schedule entry: its source name, when it runs and what it sends."""

    name: str
    task: str
    plan: Plan
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    # Celery's apply_async options as the source has them (queue, expires, headers, ...).
    options: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True
    one_off: bool = False
    start_time: datetime | None = None
    end_time: datetime | None = None
    description: str = ""
    # What the conversion changed that a user should know (goes to the report).
    notes: tuple[str, ...] = ()
