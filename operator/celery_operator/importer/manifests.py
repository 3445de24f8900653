"""Entries -> PeriodicTask (or ScheduledTask) manifests, checked by the API model's parsers."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from celery_operator.api.apps import AppRef, render_app_ref
from celery_operator.api.durations import format_duration
from celery_operator.api.errors import InvalidSpec
from celery_operator.api.names import API_VERSION, PERIODIC_KIND, SCHEDULED_KIND
from celery_operator.api.periodic import CRONTAB_FIELDS, parse_periodic_task_spec
from celery_operator.api.scheduled import parse_scheduled_task_spec
from celery_operator.api.timefmt import format_time
from celery_operator.importer.entries import ClockedPlan, CronPlan, Entry, SkipEntry
from celery_operator.importer.options import expires_field, task_fields

SOURCE_ANNOTATION = "celeryoperator.dev/imported-from"
DESCRIPTION_ANNOTATION = "celeryoperator.dev/description"


def build_manifest(
    entry: Entry, *, name: str, source: str, namespace: str | None, app: AppRef | None
) -> dict[str, Any]:
    """The manifest for `entry`, valid for the operator's parsers; SkipEntry otherwise."""
    task: dict[str, Any] = {"name": entry.task}
    if entry.args:
        task["args"] = _as_json(list(entry.args), "args")
    if entry.kwargs:
        task["kwargs"] = _as_json(dict(entry.kwargs), "kwargs")
    task.update(task_fields(entry.options))
    expires = expires_field(entry.options)
    if isinstance(entry.plan, ClockedPlan):
        kind, spec = SCHEDULED_KIND, _scheduled_spec(entry, task, expires)
    else:
        kind, spec = PERIODIC_KIND, _periodic_spec(entry, task, expires)
    if app is not None:
        spec["app"] = render_app_ref(app)
    _check(kind, spec)
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    annotations = {SOURCE_ANNOTATION: f"{source}: {entry.name}"}
    if entry.description:
        annotations[DESCRIPTION_ANNOTATION] = entry.description
    metadata["annotations"] = annotations
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def _periodic_spec(entry: Entry, task: dict[str, Any], expires: int | str | None) -> dict[str, Any]:
    if isinstance(entry.plan, CronPlan):
        # The crontab form, not a cron string: it fires as celery beat fires the crontab,
        # daylight-saving changes included (scheduling/wallclock.py).
        schedule: dict[str, Any] = {
            "crontab": crontab_fields(entry.plan.expression),
            "timeZone": entry.plan.time_zone,
        }
    else:
        assert not isinstance(entry.plan, ClockedPlan)
        schedule = {"interval": format_duration(entry.plan.every)}
    spec: dict[str, Any] = {"schedule": schedule, "task": task}
    if expires is not None:
        spec["expires"] = expires
    if not entry.enabled:
        spec["suspend"] = True
    if entry.start_time is not None:
        start = entry.start_time
        if not isinstance(entry.plan, CronPlan):
            # An interval's runs come one interval after its anchor, startTime: the first
            # run is then at the source's start_time, as there.
            start -= entry.plan.every
        spec["startTime"] = format_time(start, fraction=True)
    if entry.end_time is not None:
        spec["endTime"] = format_time(entry.end_time, fraction=True)
    if entry.one_off:
        spec["maxRuns"] = 1
    return spec


def _scheduled_spec(
    entry: Entry, task: dict[str, Any], expires: int | str | None
) -> dict[str, Any]:
    assert isinstance(entry.plan, ClockedPlan)
    if not entry.enabled:
        raise SkipEntry(
            "disabled clocked task (already run, or paused): a ScheduledTask cannot be "
            "suspended"
        )
    spec: dict[str, Any] = {"task": task, "eta": format_time(entry.plan.at, fraction=True)}
    if expires is not None:
        spec["expires"] = expires
    return spec


def _as_json(value: Any, what: str) -> Any:
    """The value as Celery's JSON serializer delivers it (tuples become lists)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise SkipEntry(f"{what} are not plain JSON values: {exc}") from None


def _check(kind: str, spec: dict[str, Any]) -> None:
    try:
        if kind == PERIODIC_KIND:
            parse_periodic_task_spec(spec)
        else:
            parse_scheduled_task_spec(spec)
    except InvalidSpec as exc:
        raise SkipEntry(f"not a valid {kind}: {exc}") from None


def crontab_fields(expression: str) -> dict[str, str]:
    """`schedule.crontab` for a five-field expression: minute and hour always, the day and
    month fields when they restrict (as a Celery crontab is usually written)."""
    fields = dict(zip(CRONTAB_FIELDS, expression.split(), strict=True))
    return {
        key: value
        for key, value in fields.items()
        if key in ("minute", "hour") or value != "*"
    }


def interval_of(every: timedelta) -> str:
    """How an interval is written in a manifest (for messages and tests)."""
    return format_duration(every)
