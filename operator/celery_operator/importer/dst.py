"""Where a converted crontab and Celery beat part ways: around daylight-saving changes.

Celery evaluates a crontab on the wall clock: it never runs again in the repeated hour when
daylight saving time ends, and runs a job set inside the skipped hour at the same minute of
the next hour. The operator follows Debian cron (scheduling/cron.py): jobs with '*' leading
the minute or hour field count elapsed time, fixed-time jobs in the skipped hour run at its
end. Rather than approximate either, the importer computes both series around each change
of the coming year, Celery's with celery.schedules as beat drives it, and reports every
run that differs.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import takewhile
from typing import Any
from zoneinfo import ZoneInfo

from celery import Celery
from celery.schedules import crontab

from celery_operator.importer.entries import CronPlan
from celery_operator.scheduling import CronSchedule

# beat re-checks its schedule at least this often (beat_max_loop_interval's default).
_BEAT_MAX_INTERVAL = timedelta(seconds=300)
# Runs within this distance of a change are compared: a day covers the changed hour and
# whatever a wall-clock computation shifts around it.
_AROUND = timedelta(days=1)
_SHOWN = 4


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


def beat_runs(
    schedule: Any, zone: str, start: datetime, end: datetime
) -> Iterator[datetime]:
    """The runs celery beat makes of a Celery schedule in `zone` after `start`, to `end`.

    Drives schedule.is_due as beat's loop does, on a fake clock: beat starts at `start`
    (the entry's first last_run_at), sleeps what is_due says (at most the max interval),
    and records a run, with last_run_at = now, whenever is_due says so. `schedule` is
    copied, then bound to an app in `zone` and to the fake clock.
    """
    tz = ZoneInfo(zone)
    app = Celery("celery-operator-import-dst", set_as_current=False)
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
        t += min(timedelta(seconds=max(next_check, 0.001)), _BEAT_MAX_INTERVAL)


def operator_runs(plan: CronPlan, start: datetime, end: datetime) -> list[datetime]:
    schedule = CronSchedule(plan.expression, plan.time_zone)
    return list(takewhile(lambda fire: fire <= end, schedule.fire_times(start)))


def celery_crontab(expression: str) -> crontab:
    """Celery's crontab for a converted expression: the same value sets, as the importer
    writes only syntax both read alike (numbers, '*', '*/n', 'a-b', commas)."""
    minute, hour, day_of_month, month_of_year, day_of_week = expression.split()
    return crontab(
        minute=minute,
        hour=hour,
        day_of_week=day_of_week,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
    )


@lru_cache(maxsize=1024)
def differences(plan: CronPlan, change: datetime) -> tuple[list[datetime], list[datetime]]:
    """(runs only the operator makes, runs only Celery makes) within a day of `change`."""
    start, end = change - _AROUND, change + _AROUND
    ours = set(operator_runs(plan, start, end))
    theirs = set(beat_runs(celery_crontab(plan.expression), plan.time_zone, start, end))
    return sorted(ours - theirs), sorted(theirs - ours)


def dst_notes(plan: CronPlan, now: datetime) -> tuple[str, ...]:
    """One note per daylight-saving change of the coming year where the runs differ."""
    if plan.time_zone in ("UTC", "Etc/UTC"):
        return ()
    year_start = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    notes: list[str] = []
    for change in offset_changes(plan.time_zone, year_start, year_start + timedelta(days=366)):
        ours, theirs = differences(plan, change)
        if ours or theirs:
            notes.append(
                f"daylight saving change in {plan.time_zone} at {_at(change)}: the "
                f"PeriodicTask runs {_list(ours)} where celery beat runs {_list(theirs)} "
                "(runs differ only there)"
            )
    return tuple(notes)


def _at(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def _list(times: list[datetime]) -> str:
    if not times:
        return "nothing"
    shown = ", ".join(_at(t) for t in times[:_SHOWN])
    more = f" and {len(times) - _SHOWN} more" if len(times) > _SHOWN else ""
    return f"{len(times)} time(s): {shown}{more}"
