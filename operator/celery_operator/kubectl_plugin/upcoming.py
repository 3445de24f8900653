"""When a PeriodicTask fires next, or a ScheduledTask is due: the engine's own math.

Pure: the object as the API server returns it, and the time, in; fire times out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery_operator.api import (
    InvalidSpec,
    PeriodicTaskSpec,
    ScheduledTaskSpec,
    format_duration,
    format_time,
    parse_periodic_task_spec,
    parse_scheduled_task_spec,
    parse_time,
)
from celery_operator.scheduling import Bounds, next_fire_times, resolve_due_time
from celery_operator.scheduling.periodic_plan import schedule_of

from .output import Refused

UTC_ZONE = "UTC"


@dataclass(frozen=True)
class Upcoming:
    schedule: str  # how the schedule reads: 'cron "30 2 * * *" in Europe/Berlin'
    zone: str | None  # a cron schedule's time zone
    times: tuple[datetime, ...]
    note: str | None  # why there are fewer times than asked for, or none


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _invalid(obj: Mapping[str, Any], kind: str, error: InvalidSpec) -> Refused:
    return Refused(f"{kind}/{_meta(obj).get('name')} has an invalid spec, so the operator "
                   f"runs nothing for it: {error}")


def periodic_spec(obj: Mapping[str, Any]) -> PeriodicTaskSpec:
    try:
        return parse_periodic_task_spec(obj.get("spec") or {})
    except InvalidSpec as exc:
        raise _invalid(obj, "periodictask", exc) from None


def scheduled_spec(obj: Mapping[str, Any]) -> ScheduledTaskSpec:
    try:
        return parse_scheduled_task_spec(obj.get("spec") or {})
    except InvalidSpec as exc:
        raise _invalid(obj, "scheduledtask", exc) from None


def created(obj: Mapping[str, Any]) -> datetime:
    return parse_time(str(_meta(obj)["creationTimestamp"]))


def describe_schedule(spec: PeriodicTaskSpec, anchor: datetime) -> str:
    schedule = spec.schedule
    if schedule.cron is not None:
        form = "crontab" if schedule.from_crontab else "cron"  # they differ at DST changes
        return f'{form} "{schedule.cron}" in {schedule.time_zone}'
    assert schedule.interval is not None
    return f"every {format_duration(schedule.interval)} from {format_time(anchor)}"


def periodic_upcoming(obj: Mapping[str, Any], now: datetime, count: int) -> Upcoming:
    """The next `count` fire times, as the engine computes status.nextScheduleTimes: after
    now and after the last scheduled run, within startTime/endTime, and no more than
    maxRuns allows. None while suspended."""
    spec = periodic_spec(obj)
    status = obj.get("status") or {}
    made = int(status.get("totalRuns") or 0)
    last = parse_time(status["lastScheduleTime"]) if status.get("lastScheduleTime") else None
    anchor = spec.start_time or created(obj)
    shown = describe_schedule(spec, anchor)
    zone = spec.schedule.time_zone if spec.schedule.cron is not None else None
    name = _meta(obj).get("name")
    if spec.suspend:
        return Upcoming(shown, zone, (), f"suspended: no runs until it is resumed "
                                         f"(kubectl celery resume {name})")
    bounds = Bounds(start_time=spec.start_time, end_time=spec.end_time, max_runs=spec.max_runs)
    times = next_fire_times(schedule_of(spec, created(obj)), after=max(now, last or now),
                            count=count, bounds=bounds, runs_so_far=made)
    note = None
    if len(times) < count:
        if spec.max_runs is not None and made + len(times) >= spec.max_runs:
            note = f"maxRuns is {spec.max_runs}; {made} run(s) made so far"
        elif spec.end_time is not None:
            note = f"endTime is {format_time(spec.end_time)}"
    return Upcoming(shown, zone, tuple(times), note)


def due_time(obj: Mapping[str, Any]) -> datetime:
    """A ScheduledTask's due time: the one the operator resolved, else the engine's rule."""
    status = obj.get("status") or {}
    if status.get("dueTime"):
        return parse_time(str(status["dueTime"]))
    spec = scheduled_spec(obj)
    return resolve_due_time(eta=spec.eta, countdown=spec.countdown, created=created(obj))
