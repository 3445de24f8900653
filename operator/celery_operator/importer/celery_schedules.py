"""Celery schedule objects (crontab, schedule, timedelta, numbers) -> plans.

Shared by the beat and RedBeat sources, which both hold Celery's own objects. Only what has
an exact equivalent converts; solar and custom classes are skipped with the reason.
"""

from __future__ import annotations

from datetime import UTC, timedelta, tzinfo
from typing import Any

from celery.schedules import crontab, schedule, solar

from celery_operator.importer.entries import CronPlan, IntervalPlan, Plan, SkipEntry
from celery_operator.scheduling import celery_crontab_expression, validate_time_zone

# A relative schedule of exactly one of these runs at whole units of the app's clock,
# which this cron expression says (Celery's delta_resolution rounds down to the unit). In a
# zone with daylight saving time Celery's wall-clock arithmetic shifts runs: UTC only.
_RELATIVE_CRON = {
    timedelta(minutes=1): "* * * * *",
    timedelta(hours=1): "0 * * * *",
    timedelta(days=1): "0 0 * * *",
}


def zone_name(zone: tzinfo | str | None) -> str | None:
    """The IANA name of a time zone as Celery configurations hold it, or None."""
    if zone is None:
        return None
    if isinstance(zone, str):
        name = zone
    elif zone is UTC:
        name = "UTC"
    else:
        # zoneinfo has `key`; pytz (older Celery settings) has `zone`.
        name = getattr(zone, "key", None) or getattr(zone, "zone", None) or str(zone)
    return name if validate_time_zone(name) is None else None


def app_time_zone(timezone: tzinfo | str | None, enable_utc: bool) -> str | None:
    """The zone Celery evaluates crontabs in: `timezone`, else UTC with enable_utc.

    None when neither is set: Celery then uses the machine's local time, unknown here.
    """
    if timezone:
        return zone_name(timezone)
    return "UTC" if enable_utc else None


def plan_of(value: Any, *, relative: bool, time_zone: str | None) -> Plan:
    """The plan of a beat entry's `schedule` value, or SkipEntry with the reason."""
    if isinstance(value, bool):
        raise SkipEntry(f"schedule {value!r} is not a schedule")
    if isinstance(value, int | float):
        return _interval(timedelta(seconds=value), relative=relative, time_zone=time_zone)
    if isinstance(value, timedelta):
        return _interval(value, relative=relative, time_zone=time_zone)
    if type(value) is schedule:
        return _interval(value.run_every, relative=bool(value.relative), time_zone=time_zone)
    if type(value) is crontab:
        return _crontab(value, time_zone)
    if isinstance(value, solar):
        raise SkipEntry(
            f"solar schedule ({value.event} at {value.lat}, {value.lon}) has no PeriodicTask "
            "equivalent"
        )
    raise SkipEntry(
        f"custom schedule class {type(value).__module__}.{type(value).__qualname__} has no "
        "PeriodicTask equivalent"
    )


def crontab_plan(
    *, minute: Any, hour: Any, day_of_week: Any, day_of_month: Any, month_of_year: Any,
    time_zone: str | None,
) -> CronPlan:
    """The plan of a Celery crontab given by its fields (django-celery-beat's rows too)."""
    if time_zone is None:
        raise SkipEntry(
            "crontab in the machine's local time (timezone unset, enable_utc False): set the "
            "Celery timezone setting first"
        )
    try:
        expression = celery_crontab_expression(
            minute=minute,
            hour=hour,
            day_of_week=day_of_week,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
        )
    except ValueError as exc:
        raise SkipEntry(f"crontab: {exc}") from None
    return CronPlan(expression=expression, time_zone=time_zone)


def _crontab(value: crontab, time_zone: str | None) -> CronPlan:
    return crontab_plan(
        minute=value._orig_minute,
        hour=value._orig_hour,
        day_of_week=value._orig_day_of_week,
        day_of_month=value._orig_day_of_month,
        month_of_year=value._orig_month_of_year,
        time_zone=time_zone,
    )


def _interval(every: timedelta, *, relative: bool, time_zone: str | None) -> Plan:
    if every <= timedelta(0):
        raise SkipEntry(f"interval {every.total_seconds():g}s must be greater than zero")
    if not relative:
        return IntervalPlan(every)
    cron = _RELATIVE_CRON.get(every)
    if cron is not None and time_zone in ("UTC", "Etc/UTC"):
        return CronPlan(expression=cron, time_zone=time_zone)
    raise SkipEntry(
        f"relative=True with an interval of {every.total_seconds():g}s: Celery rounds each run "
        "down to the whole minute, hour or day of its clock, counted from when beat started; "
        "only 1 minute, 1 hour and 1 day in UTC have an exact equivalent (a cron schedule)"
    )
