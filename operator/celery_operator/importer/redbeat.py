"""Source: RedBeat's entries in Redis.

RedBeat keeps each entry in a hash `<prefix><name>` whose `definition` field is JSON
(name, task, schedule, args, kwargs, options, enabled), with Celery objects written as
{"__type__": "crontab" | "interval" | "rrule" | "datetime", ...}; the sorted set
`<prefix>:schedule` lists every entry's key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import redis
from celery.schedules import crontab, schedule

from celery_operator.importer.celery_schedules import plan_of
from celery_operator.importer.entries import Entry, SkipEntry, SourceError

SOURCE = "redbeat"
DEFAULT_KEY_PREFIX = "redbeat:"


class RedisReadError(SourceError):
    """Redis cannot be read; the message names the URL (password hidden) and why."""


def redacted(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def _decode(d: dict[str, Any]) -> Any:
    kind = d.get("__type__")
    if kind == "crontab":
        fields = {k: v for k, v in d.items() if k != "__type__"}
        return crontab(**fields)
    if kind == "interval":
        return schedule(run_every=timedelta(seconds=d["every"]), relative=d.get("relative"))
    if kind == "datetime":
        zone = d.get("timezone", "UTC")
        tz = (
            timezone(timedelta(seconds=zone)) if isinstance(zone, int | float)
            else ZoneInfo(zone)
        )
        parts = {k: d[k] for k in ("year", "month", "day", "hour", "minute", "second",
                                   "microsecond")}
        return datetime(tzinfo=tz, **parts)
    if kind is not None:
        raise SkipEntry(f"{kind} schedule has no PeriodicTask equivalent")
    return d


def read_entries(
    url: str, *, key_prefix: str, time_zone: str
) -> Iterator[Entry | tuple[str, SkipEntry]]:
    """Every entry RedBeat's schedule set lists, or (key, why)."""
    client = redis.Redis.from_url(url)
    try:
        keys: list[bytes] = list(client.zrange(f"{key_prefix}:schedule", 0, -1))  # type: ignore[arg-type]
        definitions: list[bytes | None] = [
            client.hget(key, "definition")  # type: ignore[misc]
            for key in keys
        ]
    except (redis.RedisError, ValueError) as exc:
        raise RedisReadError(f"{redacted(url)}: {exc}") from None
    finally:
        client.close()
    for key, raw in zip(keys, definitions, strict=True):
        name = key.decode(errors="replace").removeprefix(key_prefix)
        try:
            yield _entry(name, raw, time_zone)
        except SkipEntry as exc:
            yield name, exc


def _entry(name: str, raw: bytes | None, time_zone: str) -> Entry:
    if raw is None:
        raise SkipEntry("listed in the schedule set but has no definition")
    try:
        definition: Mapping[str, Any] = json.loads(raw, object_hook=_decode)
    except (ValueError, TypeError, KeyError) as exc:
        raise SkipEntry(f"definition is not RedBeat's JSON: {exc}") from None
    options = definition.get("options") or {}
    return Entry(
        name=str(definition.get("name") or name),
        task=str(definition.get("task")),
        plan=plan_of(definition.get("schedule"), relative=False, time_zone=time_zone),
        args=tuple(definition.get("args") or ()),
        kwargs=dict(definition.get("kwargs") or {}),
        options=dict(options),
        enabled=bool(definition.get("enabled", True)),
    )
