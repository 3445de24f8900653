"""Source: django-celery-beat's tables, read with SQLAlchemy Core (no Django needed).

Naive date-times (SQLite, or USE_TZ=False) are taken as UTC, as Django stores them with
USE_TZ=True.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from celery_operator.importer.celery_schedules import crontab_plan, zone_name
from celery_operator.importer.entries import (
    ClockedPlan,
    Entry,
    IntervalPlan,
    Plan,
    SkipEntry,
    SourceError,
)

SOURCE = "django-celery-beat"
_PREFIX = "django_celery_beat_"
_TABLES = ("periodictask", "crontabschedule", "intervalschedule", "clockedschedule",
           "solarschedule")
_PERIODS = ("days", "hours", "minutes", "seconds", "microseconds")


class DatabaseError(SourceError):
    """The database cannot be read; the message names the URL (password hidden) and why."""


def redacted(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def _engine_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(
            "--database-url is not a database URL: use postgresql://USER:PASSWORD@HOST/DB or "
            "sqlite:///PATH"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername == "postgresql+psycopg":
        return parsed
    if parsed.drivername == "sqlite":
        # SQLite would create a missing file: an empty schedule instead of an error.
        if not parsed.database or not Path(parsed.database).is_file():
            raise DatabaseError(
                f"{redacted(url)}: no SQLite database file {parsed.database or '(none given)'!r}"
            )
        return parsed
    raise DatabaseError(
        f"{redacted(url)}: unsupported database {parsed.drivername!r} (postgresql or sqlite)"
    )


def read_entries(url: str) -> Iterator[Entry | tuple[str, SkipEntry]]:
    """Every row of django_celery_beat_periodictask as an Entry, or (name, why)."""
    engine = sa.create_engine(_engine_url(url))
    try:
        with engine.connect() as connection:
            rows = _read_rows(connection, url)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise DatabaseError(f"{redacted(url)}: {reason}") from None
    finally:
        engine.dispose()
    for row in rows:
        name = str(row["name"])
        try:
            yield _entry(row)
        except SkipEntry as exc:
            yield name, exc


def _read_rows(connection: Connection, url: str) -> list[dict[str, Any]]:
    metadata = sa.MetaData()
    names = [_PREFIX + table for table in _TABLES]
    present = set(sa.inspect(connection).get_table_names())
    missing = [name for name in names if name not in present]
    if missing:
        raise DatabaseError(
            f"{redacted(url)}: no table {missing[0]} (is this django-celery-beat's database, "
            "migrated?)"
        )
    metadata.reflect(connection, only=names)
    task, cron, interval, clocked, solar = (metadata.tables[name] for name in names)
    columns = list(task.c)
    joined: sa.FromClause = task
    extra: list[sa.ColumnElement[Any]] = []
    for table, key, fields in (
        (cron, "crontab_id", ("minute", "hour", "day_of_week", "day_of_month",
                              "month_of_year", "timezone")),
        (interval, "interval_id", ("every", "period")),
        (clocked, "clocked_id", ("clocked_time",)),
        (solar, "solar_id", ("event", "latitude", "longitude")),
    ):
        if key not in task.c:
            continue
        joined = joined.outerjoin(table, task.c[key] == table.c.id)
        prefix = table.name.removeprefix(_PREFIX)
        extra.extend(table.c[f].label(f"{prefix}__{f}") for f in fields if f in table.c)
    query = sa.select(*columns, *extra).select_from(joined).order_by(task.c.name)
    return [dict(row._mapping) for row in connection.execute(query)]


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite without type affinity
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise SkipEntry(f"date-time column holds {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _json(row: Mapping[str, Any], column: str, default: Any) -> Any:
    text = row.get(column)
    if text in (None, ""):
        return default
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SkipEntry(f"{column} is not JSON: {exc}") from None


def _plan(row: Mapping[str, Any]) -> Plan:
    if row.get("crontab_id") is not None:
        zone = row.get("crontabschedule__timezone") or "UTC"
        name = zone_name(str(zone))
        if name is None:
            raise SkipEntry(f"crontab time zone {zone!r} is not an IANA time zone")
        return crontab_plan(
            minute=row["crontabschedule__minute"],
            hour=row["crontabschedule__hour"],
            day_of_week=row["crontabschedule__day_of_week"],
            day_of_month=row["crontabschedule__day_of_month"],
            month_of_year=row["crontabschedule__month_of_year"],
            time_zone=name,
        )
    if row.get("interval_id") is not None:
        period = row["intervalschedule__period"]
        if period not in _PERIODS:
            raise SkipEntry(f"interval period {period!r} is not one of {', '.join(_PERIODS)}")
        every = timedelta(**{period: row["intervalschedule__every"]})
        if every <= timedelta(0):
            raise SkipEntry(f"interval every={row['intervalschedule__every']} {period}")
        return IntervalPlan(every)
    if row.get("clocked_id") is not None:
        at = _aware(row["clockedschedule__clocked_time"])
        assert at is not None
        return ClockedPlan(at)
    if row.get("solar_id") is not None:
        raise SkipEntry(
            f"solar schedule ({row.get('solarschedule__event')} at "
            f"{row.get('solarschedule__latitude')}, {row.get('solarschedule__longitude')}) has "
            "no PeriodicTask equivalent"
        )
    raise SkipEntry("no schedule (none of crontab, interval, clocked, solar is set)")


def _entry(row: Mapping[str, Any]) -> Entry:
    plan = _plan(row)
    options: dict[str, Any] = {
        key: row[key]
        for key in ("queue", "exchange", "routing_key", "priority")
        if row.get(key) not in (None, "")
    }
    headers = _json(row, "headers", {})
    if headers:
        options["headers"] = headers
    expires = _aware(row.get("expires"))
    if expires is not None:
        options["expires"] = expires  # the message expires then, and beat stops the task
    elif row.get("expire_seconds"):
        options["expires"] = int(row["expire_seconds"])
    args = _json(row, "args", [])
    kwargs = _json(row, "kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise SkipEntry("args must be a JSON list and kwargs a JSON object")
    start = _aware(row.get("start_time"))
    notes: tuple[str, ...] = ()
    if start is not None and not isinstance(plan, IntervalPlan | ClockedPlan):
        notes = (
            "django-celery-beat also sends one run at start_time itself; the PeriodicTask's "
            "first run is the first cron time at or after startTime",
        )
    return Entry(
        name=str(row["name"]),
        task=str(row["task"]),
        plan=plan,
        args=tuple(args),
        kwargs=kwargs,
        options=options,
        enabled=bool(row.get("enabled", True)),
        one_off=bool(row.get("one_off")) and not isinstance(plan, ClockedPlan),
        start_time=start if not isinstance(plan, ClockedPlan) else None,
        end_time=expires if not isinstance(plan, ClockedPlan) else None,
        description=str(row.get("description") or ""),
        notes=notes,
    )
