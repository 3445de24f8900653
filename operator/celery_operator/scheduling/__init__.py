"""Pure schedule math: due times, cron and interval fire times, missed runs, overlap.

No Kubernetes, kopf, Celery or Redis here, and no clock: every function takes the
current time as an argument and works on timezone-aware datetimes (naive ones raise
ValueError). Results are aware UTC datetimes.
"""

from celery_operator.scheduling.cron import (
    CronSchedule,
    celery_crontab_expression,
    validate_cron,
    validate_time_zone,
)
from celery_operator.scheduling.duetime import resolve_due_time, resolve_expiry, retry_delay
from celery_operator.scheduling.interval import IntervalSchedule, format_duration, parse_duration
from celery_operator.scheduling.missed import (
    ConcurrencyPolicy,
    RunDecision,
    decide_run,
    overlap_action,
)
from celery_operator.scheduling.series import (
    Bounds,
    Schedule,
    bounded_fire_times,
    next_fire_times,
)
from celery_operator.scheduling.wallclock import CrontabSchedule

__all__ = [
    "Bounds",
    "ConcurrencyPolicy",
    "CronSchedule",
    "CrontabSchedule",
    "IntervalSchedule",
    "RunDecision",
    "Schedule",
    "bounded_fire_times",
    "celery_crontab_expression",
    "decide_run",
    "format_duration",
    "next_fire_times",
    "overlap_action",
    "parse_duration",
    "resolve_due_time",
    "resolve_expiry",
    "retry_delay",
    "validate_cron",
    "validate_time_zone",
]
