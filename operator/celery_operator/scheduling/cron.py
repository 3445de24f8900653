"""Cron schedules evaluated in an IANA time zone, with Debian cron semantics.

This is ``schedule.cron``; the Celery-style ``schedule.crontab`` uses the same field
syntax but fires as Celery beat does (scheduling/wallclock.py).

Expressions have the five standard fields ``minute hour day-of-month month
day-of-week`` (names such as ``mon`` and ``jan`` allowed, ``7`` is Sunday as well as
``0``), cronsim's extensions ``L``, ``LW``, ``5L`` and ``1#3``, or one of the macros
``@yearly @annually @monthly @weekly @daily @midnight @hourly``. A six-field (seconds)
form is rejected: Debian cron semantics only exist for five fields.

Day matching follows Vixie/Debian cron: when both day-of-month and day-of-week are
restricted (neither starts with ``*``), a day matches if EITHER matches —
``0 0 13 * 5`` fires on every 13th and on every Friday.

Daylight-saving changes (verified with cronsim 2.8 and Europe/Berlin, 2026), following
Debian cron:

* Jobs at a fixed local time — neither the minute nor the hour field starts with
  ``*`` (``30 2 * * *``, ``0 9 * * 1-5``, ``@daily``) — are evaluated on the wall clock.
  At spring-forward a nonexistent local time runs at the first valid local minute
  after the gap: ``30 2 * * *`` fires at 03:00 CEST (01:00 UTC) on 2026-03-29, once,
  not at 03:30 and not skipped. At fall-back the repeated hour fires ONCE, at its first
  occurrence: 02:30 CEST (00:30 UTC) on 2026-10-25, never again at 02:30 CET.
* Jobs with ``*`` leading the minute or hour field (``0 * * * *``, ``*/15 * * * *``,
  ``*/30 2 * * *``) follow elapsed time: ``@hourly`` fires every real hour, so it fires
  at both 02:00 CEST and 02:00 CET at fall-back, and there is no 02:00 at
  spring-forward (01:00 CET is followed by 03:00 CEST, one hour later).
  ``*/30 2 * * *`` therefore fires four times on 2026-10-25 and not at all on
  2026-03-29.

All fire times are returned as aware UTC datetimes.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from celery_operator.api.periodic import CRON_MACROS
from celery_operator.scheduling._aware import to_utc

__all__ = [
    "MACROS",
    "CronSchedule",
    "celery_crontab_expression",
    "validate_cron",
    "validate_time_zone",
]

#: The macros cronsim does not understand itself, as five-field expressions (the API
#: model's table: one list of macros for the schema check and the schedule).
MACROS: Mapping[str, str] = CRON_MACROS

_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
# cronsim's error messages name the field ("Bad day-of-week"); we add the value.
_CRONSIM_FIELD = re.compile(r"Bad (minute|hour|day-of-month|month|day-of-week)")
# Validation only needs some fixed start: an expression that never fires from here
# (cronsim searches 50 years) never fires at all, since the calendar repeats.
_PROBE_START = datetime(2000, 1, 1, tzinfo=UTC)


class _CronError(ValueError):
    """A cron expression that cannot be evaluated; the message is user-facing."""


@lru_cache(maxsize=1024)
def _five_fields(expression: str) -> str:
    """Return the expression as five space-separated fields, or raise _CronError."""
    if not isinstance(expression, str):
        raise _CronError(f"cron expression must be a string, got {type(expression).__name__}")
    text = " ".join(expression.split())
    if not text:
        raise _CronError("cron expression is empty")
    if text.startswith("@"):
        macro = MACROS.get(text.lower())
        if macro is None:
            raise _CronError(
                f"unsupported cron macro {text!r}; use one of {', '.join(MACROS)}"
            )
        return macro
    if text.upper().startswith(("TZ=", "CRON_TZ=")):
        raise _CronError("time zone prefixes (TZ=, CRON_TZ=) are not supported; set timeZone")
    fields = text.split(" ")
    if len(fields) != 5:
        raise _CronError(
            f"cron expression {text!r} must have 5 fields "
            f"(minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    try:
        next(CronSim(text, _PROBE_START))
    except CronSimError as exc:
        match = _CRONSIM_FIELD.search(str(exc))
        if match is None:
            raise _CronError(f"invalid cron expression {text!r}: {exc}") from None
        field = match.group(1)
        value = fields[_FIELDS.index(field)]
        raise _CronError(f"invalid {field} field {value!r} in cron expression {text!r}") from None
    except StopIteration:
        raise _CronError(f"cron expression {text!r} never fires") from None
    except (ValueError, IndexError, TypeError) as exc:
        # Defensive: malformed text must give a message, never a crash.
        raise _CronError(f"invalid cron expression {text!r}: {exc}") from None
    return text


def validate_cron(expression: str) -> str | None:
    """Return None if ``expression`` is a valid cron expression, else a human message."""
    if not isinstance(expression, str):  # checked before the cache needs a hashable key
        return f"cron expression must be a string, got {type(expression).__name__}"
    try:
        _five_fields(expression)
    except _CronError as exc:
        return str(exc)
    return None


@lru_cache(maxsize=256)
def _zone(name: str) -> tzinfo:
    if name in ("UTC", "Etc/UTC"):
        # cronsim skips its DST machinery for datetime.UTC: same answers, less work.
        return UTC
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from None


def validate_time_zone(name: str) -> str | None:
    """Return None if ``name`` is a known IANA time zone, else a human message."""
    try:
        _zone(name)
    except ValueError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class CronSchedule:
    """A cron expression evaluated in an IANA time zone (see the module docstring)."""

    expression: str
    time_zone: str = "UTC"

    def __post_init__(self) -> None:
        # Fail at construction, not at the first evaluation hours later.
        _five_fields(self.expression)
        _zone(self.time_zone)

    def next_after(self, t: datetime) -> datetime:
        """Return the first fire time strictly after ``t``, as an aware UTC datetime.

        Raises ValueError if there is none (in practice only near year 9999).
        """
        for fire in self.fire_times(t):
            return fire
        raise ValueError(f"{self.expression!r} has no fire time after {t.isoformat()}")

    def fire_times(self, after: datetime) -> Iterator[datetime]:
        """Yield the fire times strictly after ``after``, in order, as aware UTC datetimes."""
        last = to_utc(after, "after")
        local_start = last.astimezone(_zone(self.time_zone))
        try:
            for local in CronSim(_five_fields(self.expression), local_start):
                fire = local.astimezone(UTC)
                # cronsim evaluates fixed-time jobs on the naive wall clock, so a start
                # inside the repeated fall-back hour can yield that hour's first
                # occurrence, which lies before the start: skip it.
                if fire <= last:
                    continue
                last = fire
                yield fire
        except OverflowError:
            # Past year 9999: the series simply ends.
            return


# --- celery crontab -> cron -------------------------------------------------------

_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_WEEKDAY_NAMES = {name: i for i, name in enumerate(_WEEKDAYS)} | {
    full: i
    for i, full in enumerate(
        ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
    )
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_NAMES = {name: i + 1 for i, name in enumerate(_MONTHS)} | {
    full: i + 1
    for i, full in enumerate(
        (
            "january", "february", "march", "april", "may", "june", "july",
            "august", "september", "october", "november", "december",
        )
    )
}


@dataclass(frozen=True, eq=False)  # identity hash: used as dict keys
class _CeleryField:
    name: str
    low: int
    high: int
    names: dict[str, int]


_MINUTE = _CeleryField("minute", 0, 59, {})
_HOUR = _CeleryField("hour", 0, 23, {})
_DAY_OF_MONTH = _CeleryField("day_of_month", 1, 31, {})
_MONTH_OF_YEAR = _CeleryField("month_of_year", 1, 12, _MONTH_NAMES)
_DAY_OF_WEEK = _CeleryField("day_of_week", 0, 6, _WEEKDAY_NAMES)

CrontabField = str | int | Collection[int]


def _celery_value(field: _CeleryField, token: str) -> int:
    if token.isascii() and token.isdigit():
        value = int(token)
    elif token.lower() in field.names:
        value = field.names[token.lower()]
    else:
        raise ValueError(f"{field.name}: {token!r} is not a number{_name_hint(field)}")
    if not field.low <= value <= field.high:
        raise ValueError(f"{field.name}: {value} is outside {field.low}-{field.high}")
    return value


def _name_hint(field: _CeleryField) -> str:
    if field is _DAY_OF_WEEK:
        return " or a day name (sun, mon, ..., sat; 0 is Sunday)"
    if field is _MONTH_OF_YEAR:
        return " or a month name (jan, ..., dec)"
    return ""


def _celery_step(field: _CeleryField, token: str) -> int:
    if not (token.isascii() and token.isdigit()) or int(token) == 0:
        raise ValueError(f"{field.name}: step {token!r} must be a positive integer")
    return int(token)


def _celery_term(field: _CeleryField, term: str) -> list[int]:
    """Expand one comma-separated term the way celery's crontab_parser does."""
    base, slash, step_text = term.partition("/")
    step = _celery_step(field, step_text) if slash else 1
    if base == "*":
        values = list(range(field.low, field.high + 1))
    elif "-" in base:
        start_text, _, end_text = base.partition("-")
        start = _celery_value(field, start_text)
        end = _celery_value(field, end_text)
        if end >= start:
            values = list(range(start, end + 1))
        else:
            # celery wraps around: "fri-mon" is fri, sat, sun, mon.
            values = [*range(start, field.high + 1), *range(field.low, end + 1)]
    elif slash:
        raise ValueError(
            f"{field.name}: {term!r} is not celery crontab syntax; "
            f"write '{base}-{field.high}/{step}'"
        )
    else:
        values = [_celery_value(field, base)]
    return values[::step]


def _celery_set(field: _CeleryField, spec: CrontabField) -> set[int]:
    if isinstance(spec, bool):
        raise ValueError(f"{field.name}: expected a crontab field, got {spec!r}")
    if isinstance(spec, int):
        if not field.low <= spec <= field.high:
            raise ValueError(f"{field.name}: {spec} is outside {field.low}-{field.high}")
        return {spec}
    if isinstance(spec, str):
        text = spec.strip()
        if not text:
            raise ValueError(f"{field.name}: empty field")
        result: set[int] = set()
        for term in text.split(","):
            if not term:
                raise ValueError(f"{field.name}: empty item in {spec!r}")
            result.update(_celery_term(field, term))
        return result
    items = list(spec)
    if not items:
        raise ValueError(f"{field.name}: empty collection")
    result = set()
    for item in items:
        result |= _celery_set(field, item)
    return result


def _cron_field(field: _CeleryField, values: set[int]) -> str:
    """Render a value set compactly: '*', '*/n', 'a-b' runs and commas."""
    ordered = sorted(values)
    if ordered == list(range(field.low, field.high + 1)):
        return "*"
    # cronsim's day-of-week range is 0-7, so '*/n' would not mean the same set there.
    # Two values read better as a list ("0,30") than as a step ("*/30").
    if field is not _DAY_OF_WEEK and len(ordered) >= 3:
        step = ordered[1] - ordered[0]
        if step >= 2 and ordered == list(range(field.low, field.high + 1, step)):
            return f"*/{step}"
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{ordered[i]}-{ordered[j]}")
        else:
            parts.extend(str(v) for v in ordered[i : j + 1])
        i = j + 1
    return ",".join(parts)


def celery_crontab_expression(
    *,
    minute: CrontabField = "*",
    hour: CrontabField = "*",
    day_of_week: CrontabField = "*",
    day_of_month: CrontabField = "*",
    month_of_year: CrontabField = "*",
) -> str:
    """Map celery ``crontab(...)`` fields to a five-field cron expression.

    Accepts what celery's crontab parser accepts (as django-celery-beat stores it):
    ``*``, ``*/n``, ``a``, ``a-b`` (wrapping, like celery), ``a-b/n``, comma lists,
    ints and collections of ints; day-of-week numbers 0-6 with 0 = Sunday, or names
    (``mon``, ``monday``); month names. The result is normalised to numbers, e.g.
    ``crontab(minute=30, hour=7, day_of_week="mon")`` -> ``"30 7 * * 1"``.

    Raises ValueError on bad input. The result is for a crontab schedule
    (scheduling.CrontabSchedule), which like celery requires BOTH restricted day fields to
    match; as a cron string it would fire when EITHER matches.
    """
    sets = {
        _MINUTE: _celery_set(_MINUTE, minute),
        _HOUR: _celery_set(_HOUR, hour),
        _DAY_OF_MONTH: _celery_set(_DAY_OF_MONTH, day_of_month),
        _MONTH_OF_YEAR: _celery_set(_MONTH_OF_YEAR, month_of_year),
        _DAY_OF_WEEK: _celery_set(_DAY_OF_WEEK, day_of_week),
    }
    fields = {field: _cron_field(field, values) for field, values in sets.items()}
    expression = " ".join(
        fields[f] for f in (_MINUTE, _HOUR, _DAY_OF_MONTH, _MONTH_OF_YEAR, _DAY_OF_WEEK)
    )
    problem = validate_cron(expression)
    if problem is not None:
        raise ValueError(f"celery crontab maps to {expression!r}, which is unusable: {problem}")
    return expression
