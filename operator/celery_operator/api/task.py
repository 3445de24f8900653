"""The `task` sub-object shared by ScheduledTask and PeriodicTask: one Celery call."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from celery_operator.api._fields import Reader, describe, join
from celery_operator.api.bounds import TIME_LIMIT_SECONDS_MAX
from celery_operator.api.headers import (
    HEADER_NAME_MAX_LENGTH,
    HEADER_VALUE_MAX_LENGTH,
    HEADERS_MAX,
    PERIODIC_HEADERS_MAX,
    reserved_header_reason,
)
from celery_operator.api.slips import TASK_SLIPS

# Shared with the CRD rule on spec.task.name (a unit test checks they match).
TASK_NAME_PATTERN = "^[A-Za-z_][A-Za-z0-9_-]*([.:][A-Za-z0-9_-]+)*$"
TASK_NAME_MAX_LENGTH = 200
PRIORITY_MAX = 255
ARGS_MAX_ITEMS = 100
KWARGS_MAX_PROPERTIES = 100

# Every field of `task`, as the CRD declares them (a unit test compares).
TASK_FIELDS = (
    "name",
    "args",
    "kwargs",
    "queue",
    "routingKey",
    "exchange",
    "priority",
    "headers",
    "timeLimit",
    "softTimeLimit",
)

_TASK_NAME = re.compile(TASK_NAME_PATTERN)


@dataclass(frozen=True)
class TaskCall:
    """What to send to Celery: `send_task(name, args, kwargs, **send_task_options())`."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    routing_key: str | None = None
    exchange: str | None = None
    priority: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    time_limit: float | None = None
    soft_time_limit: float | None = None

    def send_task_options(self) -> dict[str, Any]:
        """The routing/execution keyword arguments of `Celery.send_task` that are set."""
        options: dict[str, Any] = {
            "queue": self.queue,
            "routing_key": self.routing_key,
            "exchange": self.exchange,
            "priority": self.priority,
            "time_limit": self.time_limit,
            "soft_time_limit": self.soft_time_limit,
        }
        if self.headers:
            options["headers"] = dict(self.headers)
        return {k: v for k, v in options.items() if v is not None}


def parse_task(raw: Mapping[str, Any], path: str, *, periodic: bool = False) -> TaskCall:
    """Parse a raw `task` object found at `path` (e.g. "spec.task"); raise InvalidSpec.

    `periodic`: the task of a PeriodicTask, whose runs carry one more header.
    """
    reader = Reader()
    task = read_task(reader, raw, path, periodic=periodic)
    reader.raise_if_invalid()
    assert task is not None
    return task


def read_task(
    reader: Reader, raw: Mapping[str, Any], path: str, *, periodic: bool = False
) -> TaskCall | None:
    """Like parse_task, but record errors in `reader`; None when the task is unusable."""
    reader.no_other_keys(raw, path, TASK_FIELDS, TASK_SLIPS)
    name = reader.string(
        raw,
        "name",
        path,
        required=True,
        pattern=_TASK_NAME,
        pattern_message="must be a Celery task name: segments of letters, digits, '_' and '-' "
        "separated by '.' or ':', starting with a letter or '_' (e.g. reports.tasks.send)",
    )
    if name is not None and len(name) > TASK_NAME_MAX_LENGTH:
        reader.error(join(path, "name"), f"Too long: may not be more than {TASK_NAME_MAX_LENGTH}")
        name = None
    args = _read_args(reader, raw, path)
    kwargs = _read_kwargs(reader, raw, path)
    queue = reader.string(raw, "queue", path)
    routing_key = reader.string(raw, "routingKey", path)
    exchange = reader.string(raw, "exchange", path)
    priority = reader.integer(raw, "priority", path, minimum=0, maximum=PRIORITY_MAX)
    headers = _read_headers(reader, raw, path, periodic=periodic)
    time_limit = reader.number(
        raw, "timeLimit", path, minimum=0, exclusive_minimum=True, maximum=TIME_LIMIT_SECONDS_MAX
    )
    soft_time_limit = reader.number(
        raw,
        "softTimeLimit",
        path,
        minimum=0,
        exclusive_minimum=True,
        maximum=TIME_LIMIT_SECONDS_MAX,
    )
    if time_limit is not None and soft_time_limit is not None and soft_time_limit >= time_limit:
        reader.error(join(path, "softTimeLimit"), "softTimeLimit must be less than timeLimit")
    if name is None:
        return None
    return TaskCall(
        name=name,
        args=args or (),
        kwargs=kwargs or {},
        queue=queue,
        routing_key=routing_key,
        exchange=exchange,
        priority=priority,
        headers=headers,
        time_limit=time_limit,
        soft_time_limit=soft_time_limit,
    )


def _read_args(reader: Reader, raw: Mapping[str, Any], path: str) -> tuple[Any, ...] | None:
    args = reader.sequence(raw, "args", path)
    if args is None:
        return None
    field = join(path, "args")
    if len(args) > ARGS_MAX_ITEMS:
        reader.error(field, f"Too many: {len(args)}: must have at most {ARGS_MAX_ITEMS} items")
        return None
    if not all(reader.json_value(item, f"{field}[{i}]") for i, item in enumerate(args)):
        return None
    return tuple(args)


def _read_kwargs(reader: Reader, raw: Mapping[str, Any], path: str) -> dict[str, Any] | None:
    kwargs = reader.mapping(raw, "kwargs", path)
    if kwargs is None:
        return None
    field = join(path, "kwargs")
    if len(kwargs) > KWARGS_MAX_PROPERTIES:
        reader.error(
            field, f"Too many: {len(kwargs)}: must have at most {KWARGS_MAX_PROPERTIES} items"
        )
        return None
    if not all(reader.json_value(value, join(field, key)) for key, value in kwargs.items()):
        return None
    return dict(kwargs)


def _read_headers(
    reader: Reader, raw: Mapping[str, Any], path: str, *, periodic: bool
) -> dict[str, str]:
    headers = reader.mapping(raw, "headers", path)
    if headers is None:
        return {}
    field = join(path, "headers")
    most = PERIODIC_HEADERS_MAX if periodic else HEADERS_MAX
    if len(headers) > most:
        reader.error(field, f"Too many: {len(headers)}: must have at most {most} items")
        return {}
    result: dict[str, str] = {}
    for key, value in headers.items():
        where = f"{field}[{key}]"
        reason = reserved_header_reason(key, periodic=periodic)
        if not 1 <= len(key) <= HEADER_NAME_MAX_LENGTH:
            reader.error(
                where,
                f"Invalid value: header names must be 1-{HEADER_NAME_MAX_LENGTH} characters long",
            )
        elif reason is not None:
            reader.error(where, f'Forbidden: header "{key}" is reserved: {reason}')
        elif not isinstance(value, str):
            reader.error(where, f"must be a string, not {describe(value)}")
        elif len(value) > HEADER_VALUE_MAX_LENGTH:
            reader.error(where, f"Too long: may not be more than {HEADER_VALUE_MAX_LENGTH}")
        else:
            result[key] = value
    return result


def render_task(task: TaskCall) -> dict[str, Any]:
    """The raw `task` object for a TaskCall (the inverse of parse_task)."""
    raw: dict[str, Any] = {"name": task.name}
    if task.args:
        raw["args"] = list(task.args)
    if task.kwargs:
        raw["kwargs"] = dict(task.kwargs)
    optional = {
        "queue": task.queue,
        "routingKey": task.routing_key,
        "exchange": task.exchange,
        "priority": task.priority,
        "timeLimit": task.time_limit,
        "softTimeLimit": task.soft_time_limit,
    }
    raw.update({k: v for k, v in optional.items() if v is not None})
    if task.headers:
        raw["headers"] = dict(task.headers)
    return raw
