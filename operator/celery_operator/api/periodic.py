"""PeriodicTask spec: a schedule (cron, celery-style crontab or interval) and a task call."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from celery_operator.api import defaults
from celery_operator.api._fields import Reader, describe, join
from celery_operator.api.apps import AppRef, read_app_ref, render_app_ref
from celery_operator.api.bounds import MAX_RUNS_MAX, SECONDS_MAX
from celery_operator.api.durations import format_duration, parse_duration
from celery_operator.api.expires import read_expires, render_expires
from celery_operator.api.slips import CRONTAB_SLIPS, PERIODIC_SPEC_SLIPS, SCHEDULE_SLIPS
from celery_operator.api.task import TaskCall, read_task, render_task
from celery_operator.api.timefmt import format_time
from celery_operator.api.zones import TIME_ZONE_PATTERN as TIME_ZONE_PATTERN
from celery_operator.api.zones import read_time_zone

# Shared with the CRD rules (a unit test checks that the CRD carries these exact patterns).
CRON_PATTERN = (
    "^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    "|[0-9A-Za-z*,/#-]+( +[0-9A-Za-z*,/#-]+){4})$"
)
CRONTAB_FIELD_PATTERN = "^[0-9A-Za-z*,/#-]+$"
MIN_INTERVAL = timedelta(seconds=1)
MAX_INTERVAL = timedelta(hours=8784)
HISTORY_LIMIT_MAX = 100
CONCURRENCY_POLICIES = ("Allow", "Forbid", "Replace")
# Where a run is kept: a ScheduledTask object of its own (Always), or an entry of the
# PeriodicTask's status.runs (Never: one API write per run, docs/design.md Proposal A).
RUN_OBJECTS = ("Always", "Never")
# Every field of the spec and its schedule, as the CRD declares them (a unit test compares).
SPEC_FIELDS = (
    "schedule",
    "task",
    "concurrencyPolicy",
    "startingDeadlineSeconds",
    "app",
    "suspend",
    "startTime",
    "endTime",
    "maxRuns",
    "expires",
    "successfulRunsHistoryLimit",
    "failedRunsHistoryLimit",
    "runObjects",
)
SCHEDULE_FIELDS = ("cron", "crontab", "interval", "timeZone")

# Cron macros as Debian cron expands them.
CRON_MACROS: Mapping[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# Crontab keys in cron field order: "minute hour day-of-month month day-of-week".
CRONTAB_FIELDS = ("minute", "hour", "dayOfMonth", "monthOfYear", "dayOfWeek")
# cronsim's field names (in its "Bad <field>" messages) -> crontab keys.
_CRONSIM_FIELDS = {
    "minute": "minute",
    "hour": "hour",
    "day-of-month": "dayOfMonth",
    "month": "monthOfYear",
    "day-of-week": "dayOfWeek",
}

_CRON = re.compile(CRON_PATTERN)
_CRONTAB_FIELD = re.compile(CRONTAB_FIELD_PATTERN)
_CRONSIM_PROBE = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ScheduleSpec:
    """Exactly one of `cron` and `interval` is set.

    `cron` is always a 5-field expression CronSim accepts: macros are expanded and the
    celery-style crontab object is normalised into it (`from_crontab` remembers which the
    user wrote: a crontab fires as Celery beat fires it, a cron string as Debian cron).
    `time_zone` is a valid IANA name.
    """

    cron: str | None = None
    interval: timedelta | None = None
    time_zone: str = defaults.TIME_ZONE
    from_crontab: bool = False

    @property
    def description(self) -> str:
        """The schedule at a glance, for status.schedule (the SCHEDULE column):
        "0 9 * * 1", "crontab: 0 */2 * * *", "every 30s"."""
        if self.interval is not None:
            return f"every {format_duration(self.interval)}"
        return f"crontab: {self.cron}" if self.from_crontab else str(self.cron)

    @property
    def zone(self) -> ZoneInfo:
        """The time zone cron fire times are computed in."""
        return ZoneInfo(self.time_zone)


@dataclass(frozen=True)
class PeriodicTaskSpec:
    """A parsed PeriodicTask spec."""

    schedule: ScheduleSpec
    task: TaskCall
    concurrency_policy: str = defaults.CONCURRENCY_POLICY
    starting_deadline_seconds: int | None = None
    suspend: bool = defaults.SUSPEND
    start_time: datetime | None = None
    end_time: datetime | None = None
    max_runs: int | None = None
    # Each run's expiry, as ScheduledTask's: seconds count from the run's fire time.
    expires_seconds: float | None = None
    expires_at: datetime | None = None
    successful_runs_history_limit: int = defaults.SUCCESSFUL_RUNS_HISTORY_LIMIT
    failed_runs_history_limit: int = defaults.FAILED_RUNS_HISTORY_LIMIT
    app: AppRef | None = None  # None: the namespace's or the cluster's default app
    run_objects: str = defaults.RUN_OBJECTS


def parse_periodic_task_spec(spec: Mapping[str, Any]) -> PeriodicTaskSpec:
    """Parse `spec` of a PeriodicTask, with or without schema defaults applied.

    Checks what the schema cannot: the time zone exists and the cron expression is one
    cronsim can run. Raises InvalidSpec listing every problem with its field path.
    """
    reader = Reader()
    path = "spec"
    if not isinstance(spec, Mapping):
        reader.error(path, f"must be an object, not {describe(spec)}")
        reader.raise_if_invalid()
    reader.no_other_keys(spec, path, SPEC_FIELDS, PERIODIC_SPEC_SLIPS)
    raw_schedule = reader.mapping(spec, "schedule", path, required=True)
    schedule = (
        _read_schedule(reader, raw_schedule, join(path, "schedule"))
        if raw_schedule is not None
        else None
    )
    raw_task = reader.mapping(spec, "task", path, required=True)
    task = (
        read_task(reader, raw_task, join(path, "task"), periodic=True)
        if raw_task is not None
        else None
    )
    policy = reader.string(spec, "concurrencyPolicy", path, choices=CONCURRENCY_POLICIES)
    deadline = reader.integer(spec, "startingDeadlineSeconds", path, minimum=0, maximum=SECONDS_MAX)
    suspend = reader.boolean(spec, "suspend", path, default=defaults.SUSPEND)
    start_time = reader.time(spec, "startTime", path)
    end_time = reader.time(spec, "endTime", path)
    if start_time is not None and end_time is not None and end_time <= start_time:
        reader.error(join(path, "endTime"), "endTime must be after startTime")
    max_runs = reader.integer(spec, "maxRuns", path, minimum=1, maximum=MAX_RUNS_MAX)
    expires_seconds, expires_at = read_expires(reader, spec, path)
    successful = reader.integer(
        spec, "successfulRunsHistoryLimit", path, minimum=0, maximum=HISTORY_LIMIT_MAX
    )
    failed = reader.integer(
        spec, "failedRunsHistoryLimit", path, minimum=0, maximum=HISTORY_LIMIT_MAX
    )
    app = read_app_ref(reader, spec, path)
    run_objects = reader.string(spec, "runObjects", path, choices=RUN_OBJECTS)
    reader.raise_if_invalid()
    assert schedule is not None and task is not None
    return PeriodicTaskSpec(
        schedule=schedule,
        task=task,
        concurrency_policy=policy or defaults.CONCURRENCY_POLICY,
        starting_deadline_seconds=deadline,
        suspend=suspend,
        start_time=start_time,
        end_time=end_time,
        max_runs=max_runs,
        expires_seconds=expires_seconds,
        expires_at=expires_at,
        successful_runs_history_limit=(
            defaults.SUCCESSFUL_RUNS_HISTORY_LIMIT if successful is None else successful
        ),
        failed_runs_history_limit=defaults.FAILED_RUNS_HISTORY_LIMIT if failed is None else failed,
        app=app,
        run_objects=run_objects or defaults.RUN_OBJECTS,
    )


def _read_schedule(reader: Reader, raw: Mapping[str, Any], path: str) -> ScheduleSpec | None:
    reader.no_other_keys(raw, path, SCHEDULE_FIELDS, SCHEDULE_SLIPS)
    kinds = [key for key in ("cron", "crontab", "interval") if raw.get(key) is not None]
    if len(kinds) != 1:
        reader.error(path, "must set exactly one of cron, crontab or interval")
    time_zone = _read_time_zone(reader, raw, path)
    cron: str | None = None
    interval: timedelta | None = None
    if raw.get("cron") is not None:
        cron = _read_cron(reader, raw, path)
    if raw.get("crontab") is not None:
        cron = _read_crontab(reader, raw, path)
    if raw.get("interval") is not None:
        interval = _read_interval(reader, raw, path)
    if len(kinds) != 1 or time_zone is None or (cron is None and interval is None):
        return None
    return ScheduleSpec(
        cron=cron, interval=interval, time_zone=time_zone, from_crontab="crontab" in kinds
    )


def _read_time_zone(reader: Reader, raw: Mapping[str, Any], path: str) -> str | None:
    if raw.get("timeZone") is None:
        return defaults.TIME_ZONE
    return read_time_zone(reader, raw, path)


def _check_cron(expression: str) -> str | None:
    """cronsim's complaint about a 5-field expression, or None when it is runnable."""
    try:
        next(CronSim(expression, _CRONSIM_PROBE))
    except CronSimError as exc:
        return str(exc)
    except StopIteration:
        # e.g. "0 0 LW * */7": the last weekday of a month is never a Sunday.
        return "it never fires"
    return None


def _read_cron(reader: Reader, raw: Mapping[str, Any], path: str) -> str | None:
    expression = reader.string(
        raw,
        "cron",
        path,
        pattern=_CRON,
        pattern_message="must be a cron expression of 5 space-separated fields (minute hour "
        "day-of-month month day-of-week) or one of @yearly, @annually, @monthly, @weekly, "
        "@daily, @midnight, @hourly",
    )
    if expression is None:
        return None
    cron = CRON_MACROS.get(expression, " ".join(expression.split()))
    problem = _check_cron(cron)
    if problem is not None:
        reader.error(
            join(path, "cron"),
            f'Invalid value: "{expression}": not a valid cron expression: {problem}',
        )
        return None
    return cron


def _read_crontab(reader: Reader, raw: Mapping[str, Any], path: str) -> str | None:
    crontab = reader.mapping(raw, "crontab", path)
    if crontab is None:
        return None
    path = join(path, "crontab")
    reader.no_other_keys(crontab, path, CRONTAB_FIELDS, CRONTAB_SLIPS)
    fields: list[str] = []
    for key in CRONTAB_FIELDS:
        value = reader.string(
            crontab,
            key,
            path,
            pattern=_CRONTAB_FIELD,
            pattern_message="must be a cron field: digits, names, '*', ',', '-', '/', '#', "
            "no spaces",
        )
        if value is None and crontab.get(key) is not None:
            return None
        fields.append(defaults.CRONTAB_FIELD if value is None else value)
    cron = " ".join(fields)
    problem = _check_cron(cron)
    if problem is not None:
        # cronsim says "Bad hour" etc.: point at that crontab field when we can.
        field = next(
            (key for name, key in _CRONSIM_FIELDS.items() if problem == f"Bad {name}"), None
        )
        where = join(path, field) if field else path
        shown = crontab.get(field, defaults.CRONTAB_FIELD) if field else cron
        reader.error(where, f'Invalid value: "{shown}": not a valid cron field: {problem}')
        return None
    return cron


def _read_interval(reader: Reader, raw: Mapping[str, Any], path: str) -> timedelta | None:
    text = reader.string(raw, "interval", path)
    if text is None:
        return None
    field = join(path, "interval")
    try:
        interval = parse_duration(text)
    except ValueError:
        reader.error(
            field,
            f'Invalid value: "{text}": must be a duration such as 90s, 10m, 1h30m or 1.5h '
            "(units h, m, s, ms)",
        )
        return None
    if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        reader.error(
            field,
            f'Invalid value: "{text}": must be at least {format_duration(MIN_INTERVAL)} and at '
            f"most {format_duration(MAX_INTERVAL)}",
        )
        return None
    return interval


def render_periodic_task_spec(spec: PeriodicTaskSpec) -> dict[str, Any]:
    """The raw spec of a PeriodicTaskSpec, defaults written out (inverse of the parser).

    A crontab schedule comes back with every field written out; a cron macro expanded.
    """
    schedule: dict[str, Any] = {"timeZone": spec.schedule.time_zone}
    if spec.schedule.cron is not None and spec.schedule.from_crontab:
        schedule["crontab"] = dict(zip(CRONTAB_FIELDS, spec.schedule.cron.split(), strict=True))
    elif spec.schedule.cron is not None:
        schedule["cron"] = spec.schedule.cron
    if spec.schedule.interval is not None:
        schedule["interval"] = format_duration(spec.schedule.interval)
    raw: dict[str, Any] = {
        "schedule": schedule,
        "task": render_task(spec.task),
        "concurrencyPolicy": spec.concurrency_policy,
        "suspend": spec.suspend,
        "successfulRunsHistoryLimit": spec.successful_runs_history_limit,
        "failedRunsHistoryLimit": spec.failed_runs_history_limit,
        "runObjects": spec.run_objects,
    }
    if spec.starting_deadline_seconds is not None:
        raw["startingDeadlineSeconds"] = spec.starting_deadline_seconds
    if spec.start_time is not None:
        raw["startTime"] = format_time(spec.start_time, fraction=True)
    if spec.end_time is not None:
        raw["endTime"] = format_time(spec.end_time, fraction=True)
    if spec.max_runs is not None:
        raw["maxRuns"] = spec.max_runs
    expires = render_expires(spec.expires_seconds, spec.expires_at)
    if expires is not None:
        raw["expires"] = expires
    if spec.app is not None:
        raw["app"] = render_app_ref(spec.app)
    return raw
