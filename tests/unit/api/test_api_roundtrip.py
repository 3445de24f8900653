"""Round trips: parse(render(spec)) == spec, and schema defaults change nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from api_crd_schema import REPO_ROOT, crd, with_defaults
from hypothesis import given
from hypothesis import strategies as st

from celery_operator.api import (
    format_duration,
    format_time,
    parse_periodic_task_spec,
    parse_scheduled_task_spec,
    render_periodic_task_spec,
    render_scheduled_task_spec,
)
from celery_operator.api.headers import reserved_header_reason

EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))
ZONES = ("UTC", "Asia/Seoul", "America/New_York")

# One-time work at import, not in the first draw: load the CRDs and the zone data.
for _kind in ("ScheduledTask", "PeriodicTask"):
    crd(_kind)
for _zone in ZONES:
    ZoneInfo(_zone)

_json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10)
_json = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda dt: format_time(dt, fraction=True))
_seconds = st.integers(1, 10_000).map(float) | st.floats(0.5, 10_000, allow_nan=False)


@st.composite
def task_objects(draw: st.DrawFn) -> dict[str, Any]:
    raw: dict[str, Any] = {"name": draw(st.sampled_from(["demo.add", "a.b:c", "_x-y.z"]))}
    optional = {
        "args": st.lists(_json, max_size=4),
        "kwargs": st.dictionaries(st.text(min_size=1, max_size=8), _json, max_size=4),
        "queue": st.sampled_from(["celery", "high_priority"]),
        "routingKey": st.just("rk"),
        "exchange": st.just("ex"),
        "priority": st.integers(0, 255),
        "headers": st.dictionaries(
            st.text(min_size=1, max_size=8).filter(
                lambda k: reserved_header_reason(k, periodic=True) is None
            ),
            st.text(max_size=8),
            max_size=3,
        ),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            raw[key] = draw(strategy)
    if draw(st.booleans()):
        hard = draw(_seconds)
        raw["timeLimit"] = hard
        if draw(st.booleans()):
            raw["softTimeLimit"] = hard / 2
    return raw


@st.composite
def scheduled_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"task": draw(task_objects())}
    when = draw(st.sampled_from(["now", "eta", "countdown"]))
    if when == "eta":
        spec["eta"] = draw(_times)
    elif when == "countdown":
        spec["countdown"] = draw(st.integers(0, 10**6) | st.floats(0, 10**6))
    expires = draw(st.sampled_from(["none", "seconds", "time"]))
    if expires == "seconds":
        spec["expires"] = draw(st.integers(0, 10**6))
    elif expires == "time":
        spec["expires"] = draw(_times)
    if draw(st.booleans()):
        retry: dict[str, Any] = {}
        if draw(st.booleans()):
            retry["limit"] = draw(st.integers(0, 100))
        if draw(st.booleans()):
            initial = draw(st.integers(0, 100))
            retry["backoff"] = {
                "initialSeconds": initial,
                "factor": draw(st.integers(1, 5)),
                "maxSeconds": initial + draw(st.integers(0, 1000)),
            }
        if draw(st.booleans()):
            retry["on"] = draw(st.lists(st.sampled_from(["Failed", "Lost"]), unique=True))
        spec["retry"] = retry
    if draw(st.booleans()):
        spec["revoke"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "terminate": st.booleans(),
                    "signal": st.sampled_from(["SIGTERM", "SIGKILL", "SIGUSR1"]),
                },
            )
        )
    if draw(st.booleans()):
        spec["ttlSecondsAfterFinished"] = draw(st.integers(0, 10**6))
    return spec


_cron_field = st.sampled_from(["*", "0", "*/15", "1-5", "0,30", "MON-FRI"])


@st.composite
def periodic_specs(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["cron", "crontab", "interval"]))
    schedule: dict[str, Any] = {}
    if kind == "cron":
        schedule["cron"] = draw(
            st.sampled_from(["*/5 * * * *", "30 7 * * 1", "@daily", "0 0 L * *"])
        )
    elif kind == "crontab":
        schedule["crontab"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "minute": st.sampled_from(["0", "*/15", "30"]),
                    "hour": st.sampled_from(["7", "9-17", "*"]),
                    "monthOfYear": st.sampled_from(["*", "1", "jan-jun"]),
                    "dayOfWeek": st.sampled_from(["*", "1", "mon-fri"]),
                },
            )
        )
    else:
        delta = draw(st.timedeltas(timedelta(seconds=1), timedelta(hours=8784)))
        schedule["interval"] = format_duration(delta)
    if draw(st.booleans()):
        schedule["timeZone"] = draw(st.sampled_from(ZONES))
    spec: dict[str, Any] = {"schedule": schedule, "task": draw(task_objects())}
    optional = {
        "concurrencyPolicy": st.sampled_from(["Allow", "Forbid", "Replace"]),
        "startingDeadlineSeconds": st.integers(0, 10**6),
        "suspend": st.booleans(),
        "maxRuns": st.integers(1, 1000),
        "successfulRunsHistoryLimit": st.integers(0, 100),
        "failedRunsHistoryLimit": st.integers(0, 100),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            spec[key] = draw(strategy)
    if draw(st.booleans()):
        start = draw(_times)
        spec["startTime"] = start
        if draw(st.booleans()):
            end = datetime.fromisoformat(start) + draw(
                st.timedeltas(timedelta(seconds=1), timedelta(days=3650))
            )
            spec["endTime"] = format_time(end, fraction=True)
    return spec


@given(scheduled_specs())
def test_scheduled_render_parse_round_trip(raw: dict[str, Any]) -> None:
    spec = parse_scheduled_task_spec(raw)
    assert parse_scheduled_task_spec(render_scheduled_task_spec(spec)) == spec


@given(scheduled_specs())
def test_scheduled_schema_defaults_change_nothing(raw: dict[str, Any]) -> None:
    assert parse_scheduled_task_spec(with_defaults("ScheduledTask", raw)) == (
        parse_scheduled_task_spec(raw)
    )


@given(periodic_specs())
def test_periodic_render_parse_round_trip(raw: dict[str, Any]) -> None:
    spec = parse_periodic_task_spec(raw)
    assert parse_periodic_task_spec(render_periodic_task_spec(spec)) == spec


@given(periodic_specs())
def test_periodic_schema_defaults_change_nothing(raw: dict[str, Any]) -> None:
    assert parse_periodic_task_spec(with_defaults("PeriodicTask", raw)) == (
        parse_periodic_task_spec(raw)
    )


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: Path(p).name)
def test_examples_parse(path: Path) -> None:
    obj = yaml.safe_load(path.read_text())
    parse = {"ScheduledTask": parse_scheduled_task_spec, "PeriodicTask": parse_periodic_task_spec}
    parsed = parse[obj["kind"]](obj["spec"])
    assert parse[obj["kind"]](with_defaults(obj["kind"], obj["spec"])) == parsed
