"""PeriodicTask spec parsing: schedules, time zones, cron via cronsim, field paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from api_crd_schema import with_defaults
from cronsim import CronSim
from hypothesis import given
from hypothesis import strategies as st

from celery_operator.api import (
    InvalidSpec,
    PeriodicTaskSpec,
    ScheduleSpec,
    TaskCall,
    parse_periodic_task_spec,
)
from celery_operator.api.periodic import CRON_MACROS

TASK = {"name": "demo.add", "args": [1, 1]}


def _parse(schedule: dict[str, Any], **spec: Any) -> PeriodicTaskSpec:
    return parse_periodic_task_spec({"schedule": schedule, "task": TASK, **spec})


def _errors(schedule: dict[str, Any], **spec: Any) -> list[str]:
    with pytest.raises(InvalidSpec) as info:
        _parse(schedule, **spec)
    return [str(e) for e in info.value.errors]


def _paths(schedule: dict[str, Any], **spec: Any) -> list[str]:
    with pytest.raises(InvalidSpec) as info:
        _parse(schedule, **spec)
    return [e.path for e in info.value.errors]


def test_interval_with_defaults() -> None:
    spec = _parse({"interval": "10m"})
    assert spec == PeriodicTaskSpec(
        schedule=ScheduleSpec(interval=timedelta(minutes=10), time_zone="UTC"),
        task=TaskCall(name="demo.add", args=(1, 1)),
        concurrency_policy="Allow",
        starting_deadline_seconds=None,
        suspend=False,
        start_time=None,
        end_time=None,
        max_runs=None,
        successful_runs_history_limit=3,
        failed_runs_history_limit=1,
    )


def test_every_field_set() -> None:
    spec = _parse(
        {"cron": "30 7 * * 1", "timeZone": "Asia/Seoul"},
        concurrencyPolicy="Forbid",
        startingDeadlineSeconds=300,
        suspend=True,
        startTime="2030-01-01T00:00:00Z",
        endTime="2031-01-01T00:00:00+09:00",
        maxRuns=1,
        successfulRunsHistoryLimit=0,
        failedRunsHistoryLimit=10,
    )
    assert spec.schedule == ScheduleSpec(cron="30 7 * * 1", time_zone="Asia/Seoul")
    assert spec.schedule.zone.key == "Asia/Seoul"
    assert spec.concurrency_policy == "Forbid"
    assert spec.starting_deadline_seconds == 300
    assert spec.suspend is True
    assert spec.start_time == datetime(2030, 1, 1, tzinfo=UTC)
    assert spec.end_time == datetime(2030, 12, 31, 15, 0, tzinfo=UTC)
    assert spec.max_runs == 1
    assert (spec.successful_runs_history_limit, spec.failed_runs_history_limit) == (0, 10)


def test_celery_crontab_is_normalised_to_cron_field_order() -> None:
    # crontab(minute=30, hour=7, day_of_week=1) -> "minute hour dom month dow"
    spec = _parse({"crontab": {"hour": "7", "minute": "30", "dayOfWeek": "1"}})
    assert spec.schedule.cron == "30 7 * * 1"
    spec = _parse(
        {
            "crontab": {
                "minute": "0",
                "hour": "*/3",
                "dayOfMonth": "1-7",
                "monthOfYear": "jan,jul",
                "dayOfWeek": "*",
            }
        }
    )
    assert spec.schedule.cron == "0 */3 1-7 jan,jul *"


def test_empty_crontab_is_every_minute() -> None:
    assert _parse({"crontab": {}}).schedule.cron == "* * * * *"


@pytest.mark.parametrize(("macro", "cron"), sorted(CRON_MACROS.items()))
def test_macros_are_expanded(macro: str, cron: str) -> None:
    assert _parse({"cron": macro}).schedule.cron == cron


def test_cron_whitespace_is_normalised() -> None:
    assert _parse({"cron": "0   7 * *  1"}).schedule.cron == "0 7 * * 1"


@pytest.mark.parametrize(
    "cron", ["*/15 * * * *", "0 9-17 * * MON-FRI", "0 0 L * *", "0 0 * * 5L", "0 0 * * 1#2"]
)
def test_cron_features_cronsim_runs(cron: str) -> None:
    assert _parse({"cron": cron}).schedule.cron == cron


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("61 * * * *", "not a valid cron expression: Bad minute"),
        ("* 24 * * *", "not a valid cron expression: Bad hour"),
        ("0 0 30 2 *", "not a valid cron expression: Bad day-of-month"),
        ("0 0 * 13 *", "not a valid cron expression: Bad month"),
        ("0 0 * * 8", "not a valid cron expression: Bad day-of-week"),
        ("0 0 * * MONDAY", "not a valid cron expression: Bad day-of-week"),
        ("0 0 LW * */7", "not a valid cron expression: it never fires"),
    ],
)
def test_cron_checked_by_cronsim(cron: str, message: str) -> None:
    assert _errors({"cron": cron}) == [f'spec.schedule.cron: Invalid value: "{cron}": {message}']


@pytest.mark.parametrize(
    "cron", ["* * * *", "* * * * * *", "@reboot", "@every 5m", "", "0 7 * * 1 ", "0\t7 * * 1"]
)
def test_cron_shape(cron: str) -> None:
    assert _paths({"cron": cron}) == ["spec.schedule.cron"]


@pytest.mark.parametrize(
    ("crontab", "path"),
    [
        ({"hour": "25"}, "spec.schedule.crontab.hour"),
        ({"minute": "60"}, "spec.schedule.crontab.minute"),
        ({"dayOfMonth": "32"}, "spec.schedule.crontab.dayOfMonth"),
        ({"monthOfYear": "0"}, "spec.schedule.crontab.monthOfYear"),
        ({"dayOfWeek": "9"}, "spec.schedule.crontab.dayOfWeek"),
        ({"hour": "7 8"}, "spec.schedule.crontab.hour"),
        ({"hour": 7}, "spec.schedule.crontab.hour"),
    ],
)
def test_bad_crontab_fields_are_named(crontab: dict[str, Any], path: str) -> None:
    assert _paths({"crontab": crontab}) == [path]


def test_crontab_day_fields_may_both_be_set_when_one_starts_with_a_star() -> None:
    # Debian cron ANDs the day fields when one starts with "*", as Celery always does.
    assert _parse({"crontab": {"dayOfMonth": "*/2", "dayOfWeek": "1"}}).schedule.cron == (
        "* * */2 * 1"
    )


def test_crontab_day_fields_may_both_be_restricted() -> None:
    # The crontab form fires as Celery does: both must match (scheduling/wallclock.py).
    spec = _parse({"crontab": {"minute": "0", "hour": "9", "dayOfMonth": "1-7",
                               "dayOfWeek": "1"}})
    assert spec.schedule.cron == "0 9 1-7 * 1"


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        ("1s", timedelta(seconds=1)),
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(minutes=90)),
        ("1.5h", timedelta(minutes=90)),
        ("1500ms", timedelta(seconds=1.5)),
        ("8784h", timedelta(hours=8784)),
    ],
)
def test_intervals(interval: str, expected: timedelta) -> None:
    assert _parse({"interval": interval}).schedule.interval == expected


@pytest.mark.parametrize("interval", ["0s", "500ms", "999ms", "8784h1s", "1d", "10", "-5m", "1 h"])
def test_bad_intervals(interval: str) -> None:
    assert _paths({"interval": interval}) == ["spec.schedule.interval"]


@pytest.mark.parametrize(
    "schedule",
    [
        {},
        {"timeZone": "UTC"},
        {"cron": "* * * * *", "interval": "1m"},
        {"cron": "* * * * *", "crontab": {}},
        {"crontab": {}, "interval": "1m"},
    ],
)
def test_exactly_one_schedule_kind(schedule: dict[str, Any]) -> None:
    assert _errors(schedule) == ["spec.schedule: must set exactly one of cron, crontab or interval"]


@pytest.mark.parametrize("zone", ["Mars/Base", "America", "localtime", "Europe/Berlin/X"])
def test_unknown_time_zones(zone: str) -> None:
    assert _errors({"cron": "* * * * *", "timeZone": zone}) == [
        f'spec.schedule.timeZone: unknown time zone "{zone}"'
    ]


@pytest.mark.parametrize("zone", ["../etc/passwd", "/etc/localtime", "Asia Seoul", ""])
def test_time_zone_shape(zone: str) -> None:
    assert _paths({"cron": "* * * * *", "timeZone": zone}) == ["spec.schedule.timeZone"]


@pytest.mark.parametrize(
    "zone", ["UTC", "Asia/Seoul", "America/Argentina/Buenos_Aires", "Etc/GMT+5"]
)
def test_known_time_zones(zone: str) -> None:
    assert _parse({"cron": "* * * * *", "timeZone": zone}).schedule.time_zone == zone


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"concurrencyPolicy": "Sometimes"}, "spec.concurrencyPolicy"),
        ({"startingDeadlineSeconds": -1}, "spec.startingDeadlineSeconds"),
        ({"suspend": "no"}, "spec.suspend"),
        ({"startTime": "tomorrow"}, "spec.startTime"),
        (
            {"startTime": "2030-01-02T00:00:00Z", "endTime": "2030-01-01T00:00:00Z"},
            "spec.endTime",
        ),
        (
            {"startTime": "2030-01-01T00:00:00Z", "endTime": "2030-01-01T09:00:00+09:00"},
            "spec.endTime",
        ),
        ({"maxRuns": 0}, "spec.maxRuns"),
        ({"successfulRunsHistoryLimit": -1}, "spec.successfulRunsHistoryLimit"),
        ({"failedRunsHistoryLimit": 101}, "spec.failedRunsHistoryLimit"),
        ({"task": {"name": ""}}, "spec.task.name"),
        ({"task": None}, "spec.task"),
    ],
)
def test_bad_specs_name_the_field(spec: dict[str, Any], path: str) -> None:
    assert _paths({"interval": "1m"}, **spec) == [path]


def test_missing_schedule() -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_periodic_task_spec({"task": TASK})
    assert str(info.value) == "spec.schedule: Required value"


def test_several_problems_at_once() -> None:
    assert _paths({"cron": "99 * * * *", "timeZone": "Mars/Base"}, maxRuns=0) == [
        "spec.schedule.timeZone",
        "spec.schedule.cron",
        "spec.maxRuns",
    ]


@pytest.mark.parametrize(
    "spec",
    [
        {"schedule": {"interval": "10m"}, "task": TASK},
        {"schedule": {"crontab": {"hour": "7"}}, "task": TASK},
        {"schedule": {"cron": "@daily", "timeZone": "Asia/Seoul"}, "task": TASK, "suspend": True},
        {"schedule": {"interval": "1s"}, "task": TASK, "failedRunsHistoryLimit": 0},
    ],
)
def test_same_spec_with_and_without_schema_defaults(spec: dict[str, Any]) -> None:
    assert parse_periodic_task_spec(spec) == parse_periodic_task_spec(
        with_defaults("PeriodicTask", spec)
    )


_FIELD_TEXT = st.text(alphabet="0123456789*,/#-LWmonMONjanJAN", min_size=1, max_size=8)


@given(st.lists(_FIELD_TEXT, min_size=5, max_size=5))
def test_any_cron_the_schema_accepts_parses_or_is_a_field_error(fields: list[str]) -> None:
    # Whatever passes the CRD's shape check either runs in cronsim or is an InvalidSpec:
    # never another exception.
    try:
        spec = _parse({"cron": " ".join(fields)})
    except InvalidSpec as exc:
        assert [e.path for e in exc.errors] == ["spec.schedule.cron"]
    else:
        assert spec.schedule.cron is not None
        next(CronSim(spec.schedule.cron, datetime(2030, 1, 1, tzinfo=UTC)))
