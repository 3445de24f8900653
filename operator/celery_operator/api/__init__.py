"""The API of celery-operator: typed model of ScheduledTask, PeriodicTask and the apps.

Pure: parsing raw objects (as the API server returns them) into frozen dataclasses with
field-path errors, status shapes and limits, and metav1.Condition helpers. The CRDs in
crds/ are the validator of record; this model gives typed access and checks what the
schema cannot (time zones, cron expressions cronsim can run).
"""

from celery_operator.api.apps import (
    AppDefaults,
    AppPolicy,
    AppRef,
    CeleryAppSpec,
    SecretKeyRef,
    parse_app_ref,
    parse_celery_app_spec,
    policy_violation,
    selector_matches,
)
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
    CELERYAPP_KIND,
    CELERYAPP_PLURAL,
    CLUSTER_CELERYAPP_KIND,
    CLUSTER_CELERYAPP_PLURAL,
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
    "CELERYAPP_KIND",
    "CELERYAPP_PLURAL",
    "CLUSTER_CELERYAPP_KIND",
    "CLUSTER_CELERYAPP_PLURAL",
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
    "AppDefaults",
    "AppPolicy",
    "AppRef",
    "CeleryAppSpec",
    "FieldError",
    "InvalidSpec",
    "PeriodicTaskSpec",
    "Phase",
    "RetryPolicy",
    "RevokeRequest",
    "ScheduleSpec",
    "ScheduledTaskSpec",
    "SecretKeyRef",
    "TaskCall",
    "format_duration",
    "format_time",
    "get_condition",
    "is_condition_true",
    "parse_app_ref",
    "parse_celery_app_spec",
    "parse_duration",
    "parse_periodic_task_spec",
    "parse_scheduled_task_spec",
    "parse_task",
    "parse_time",
    "policy_violation",
    "render_periodic_task_spec",
    "render_scheduled_task_spec",
    "render_task",
    "selector_matches",
    "set_condition",
]
