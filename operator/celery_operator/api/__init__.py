"""The API of celery-operator: typed spec/status model of ScheduledTask and PeriodicTask.

Pure: parsing raw objects (as the API server returns them) into frozen dataclasses with
field-path errors, status shapes and limits, and metav1.Condition helpers. The CRDs in
crds/ are the validator of record; this model gives typed access and checks what the
schema cannot (time zones, cron expressions cronsim can run).
"""

from celery_operator.api.conditions import (
    READY,
    RECONCILING,
    STALLED,
    get_condition,
    is_condition_true,
    set_condition,
)
from celery_operator.api.durations import format_duration, parse_duration
from celery_operator.api.errors import FieldError, InvalidSpec
from celery_operator.api.names import (
    API_VERSION,
    GROUP,
    PERIODIC_KIND,
    PERIODIC_PLURAL,
    SCHEDULED_KIND,
    SCHEDULED_PLURAL,
    VERSION,
)
from celery_operator.api.periodic import (
    PeriodicTaskSpec,
    ScheduleSpec,
    parse_periodic_task_spec,
    render_periodic_task_spec,
)
from celery_operator.api.phases import FINISHED_PHASES, Phase
from celery_operator.api.scheduled import (
    RetryPolicy,
    RevokeRequest,
    ScheduledTaskSpec,
    parse_scheduled_task_spec,
    render_scheduled_task_spec,
)
from celery_operator.api.task import TaskCall, parse_task, render_task
from celery_operator.api.timefmt import format_time, parse_time

__all__ = [
    "API_VERSION",
    "FINISHED_PHASES",
    "GROUP",
    "PERIODIC_KIND",
    "PERIODIC_PLURAL",
    "READY",
    "RECONCILING",
    "SCHEDULED_KIND",
    "SCHEDULED_PLURAL",
    "STALLED",
    "VERSION",
    "FieldError",
    "InvalidSpec",
    "PeriodicTaskSpec",
    "Phase",
    "RetryPolicy",
    "RevokeRequest",
    "ScheduleSpec",
    "ScheduledTaskSpec",
    "TaskCall",
    "format_duration",
    "format_time",
    "get_condition",
    "is_condition_true",
    "parse_duration",
    "parse_periodic_task_spec",
    "parse_scheduled_task_spec",
    "parse_task",
    "parse_time",
    "render_periodic_task_spec",
    "render_scheduled_task_spec",
    "render_task",
    "set_condition",
]
