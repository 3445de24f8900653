"""Celery's apply_async options of an entry -> the task fields of a manifest."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from celery_operator.api.timefmt import format_time
from celery_operator.importer.entries import SkipEntry

# Celery option -> key in the manifest's `task` object.
_TASK_FIELDS = {
    "queue": "queue",
    "exchange": "exchange",
    "routing_key": "routingKey",
    "priority": "priority",
    "headers": "headers",
    "time_limit": "timeLimit",
    "soft_time_limit": "softTimeLimit",
}


def task_fields(options: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's task fields for these options; SkipEntry naming any other option."""
    unknown = sorted(set(options) - set(_TASK_FIELDS) - {"expires"})
    if unknown:
        raise SkipEntry(
            f"options {', '.join(unknown)} have no PeriodicTask field (supported: "
            f"{', '.join(sorted([*_TASK_FIELDS, 'expires']))})"
        )
    fields: dict[str, Any] = {}
    for option, key in _TASK_FIELDS.items():
        value = options.get(option)
        if value is None or (option == "headers" and not value):
            continue
        if option in ("queue", "exchange"):
            # kombu Queue/Exchange objects: the operator sends by name.
            value = getattr(value, "name", value)
        fields[key] = value
    return fields


def expires_field(options: Mapping[str, Any]) -> int | str | None:
    """`spec.expires`: whole seconds after each run's fire time, or an RFC 3339 time."""
    value = options.get("expires")
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise SkipEntry(f"options.expires {value.isoformat()} has no time zone")
        return format_time(value, fraction=True)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value != int(value) or value < 0:
            raise SkipEntry(f"options.expires {value!r}: only whole seconds >= 0 are supported")
        return int(value)
    raise SkipEntry(f"options.expires {value!r} is neither seconds nor a date-time")
