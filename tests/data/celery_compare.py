"""The one comparison of the importer's tests: operator runs against Celery beat's runs."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from celery import Celery

# beat re-checks its schedule at least this often (beat_max_loop_interval's default).
BEAT_MAX_INTERVAL = timedelta(seconds=300)


@lru_cache(maxsize=64)
def offset_changes(zone: str, start: datetime, end: datetime) -> tuple[datetime, ...]:
    """The instants in [start, end) where `zone`'s UTC offset changes (hourly resolution)."""
    tz = ZoneInfo(zone)
    changes: list[datetime] = []
    t = start.replace(minute=0, second=0, microsecond=0)
    offset = t.astimezone(tz).utcoffset()
    while t < end:
        t += timedelta(hours=1)
        current = t.astimezone(tz).utcoffset()
        if current != offset:
            changes.append(t)
            offset = current
    return tuple(changes)


def beat_runs(schedule: Any, zone: str, start: datetime, end: datetime) -> Iterator[datetime]:
    """The runs celery beat makes of a Celery schedule in `zone` after `start`, to `end`.

    Drives schedule.is_due as beat's loop does, on a fake clock: beat starts at `start`
    (the entry's first last_run_at), sleeps what is_due says (at most the max interval),
    and records a run, with last_run_at = now, whenever is_due says so. `schedule` is
    copied, then bound to an app in `zone` and to the fake clock.
    """
    tz = ZoneInfo(zone)
    app = Celery("celery-operator-compare", set_as_current=False)
    app.conf.timezone = zone
    clock = [start]
    schedule = copy.copy(schedule)
    schedule.app = app
    schedule.nowfun = lambda: clock[0].astimezone(tz)
    last = start.astimezone(tz)
    t = start
    while t <= end:
        clock[0] = t
        due, next_check = schedule.is_due(last)
        if due:
            yield t
            last = t.astimezone(tz)
        t += min(timedelta(seconds=max(next_check, 0.001)), BEAT_MAX_INTERVAL)


def assert_same_runs(name: str, ours: Sequence[datetime], theirs: Sequence[datetime]) -> None:
    """Exactly the same runs; the message lists the ones that differ."""
    if list(ours) != list(theirs):
        only_ours = sorted(set(ours) - set(theirs))
        only_theirs = sorted(set(theirs) - set(ours))
        raise AssertionError(
            f"{name}: only the operator runs at {[t.isoformat() for t in only_ours]}, "
            f"only celery beat at {[t.isoformat() for t in only_theirs]}"
        )
