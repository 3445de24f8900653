"""The CRDs and the Python model say the same thing: defaults, patterns, enums, limits."""

from __future__ import annotations

import re
from typing import Any

import pytest
from api_crd_schema import crd, defaults, root_schema, rules, schema_at, version, walk

from celery_operator import api
from celery_operator.api import conditions, durations, periodic, scheduled, status, task
from celery_operator.api import defaults as model_defaults

KINDS = ("ScheduledTask", "PeriodicTask")


@pytest.mark.parametrize(
    ("kind", "plural", "short"),
    [("ScheduledTask", api.SCHEDULED_PLURAL, "st"), ("PeriodicTask", api.PERIODIC_PLURAL, "pt")],
)
def test_names_group_and_version(kind: str, plural: str, short: str) -> None:
    spec = crd(kind)["spec"]
    assert crd(kind)["metadata"]["name"] == f"{plural}.{api.GROUP}"
    assert spec["group"] == api.GROUP
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == kind
    assert spec["names"]["plural"] == plural
    assert spec["names"]["shortNames"] == [short]
    assert spec["names"]["categories"] == ["celery"]
    ver = version(kind)
    assert (ver["name"], ver["served"], ver["storage"]) == (api.VERSION, True, True)
    assert ver["subresources"] == {"status": {}}


def test_scheduled_task_defaults_match_the_crd() -> None:
    assert defaults("ScheduledTask") == dict(model_defaults.SCHEDULED_TASK_DEFAULTS)


def test_periodic_task_defaults_match_the_crd() -> None:
    assert defaults("PeriodicTask") == dict(model_defaults.PERIODIC_TASK_DEFAULTS)


@pytest.mark.parametrize("path", ["spec.retry", "spec.retry.backoff"])
def test_objects_with_defaulted_fields_default_to_empty(path: str) -> None:
    # Without `default: {}` the API server would not default retry.limit etc. when the
    # user omits `retry` altogether.
    assert schema_at("ScheduledTask", path)["default"] == {}


@pytest.mark.parametrize("path", ["spec.task", "status.conditions"])
def test_shared_sub_schemas_are_identical(path: str) -> None:
    assert schema_at("ScheduledTask", path) == schema_at("PeriodicTask", path)


def _matches_rule(pattern: str, rule: str) -> bool:
    return f"self.matches('{pattern}')" in rule


def test_model_patterns_are_the_crd_patterns() -> None:
    assert any(
        _matches_rule(task.TASK_NAME_PATTERN, r) for r in rules("ScheduledTask", "spec.task.name")
    )
    assert any(
        _matches_rule(periodic.CRON_PATTERN, r) for r in rules("PeriodicTask", "spec.schedule.cron")
    )
    for field in periodic.CRONTAB_FIELDS:
        assert any(
            _matches_rule(periodic.CRONTAB_FIELD_PATTERN, r)
            for r in rules("PeriodicTask", f"spec.schedule.crontab.{field}")
        ), field
    interval_rules = rules("PeriodicTask", "spec.schedule.interval")
    assert any(_matches_rule(durations.INTERVAL_PATTERN, r) for r in interval_rules)
    bounds = (periodic.MIN_INTERVAL, periodic.MAX_INTERVAL)
    for bound in bounds:
        assert any(f"duration('{durations.format_duration(bound)}')" in r for r in interval_rules)
    assert any(
        _matches_rule(periodic.TIME_ZONE_PATTERN, r)
        for r in rules("PeriodicTask", "spec.schedule.timeZone")
    )
    reason = schema_at("ScheduledTask", "status.conditions[].reason")
    assert reason["pattern"] == conditions.REASON_PATTERN
    assert reason["maxLength"] == conditions.REASON_MAX_LENGTH
    message = schema_at("ScheduledTask", "status.conditions[].message")
    assert message["maxLength"] == conditions.MESSAGE_MAX_LENGTH


def test_cron_macros_are_the_ones_the_crd_accepts() -> None:
    pattern = re.compile(periodic.CRON_PATTERN)
    macros = re.search(r"@\(([a-z|]+)\)", periodic.CRON_PATTERN)
    assert macros is not None
    assert {f"@{m}" for m in macros.group(1).split("|")} == set(periodic.CRON_MACROS)
    assert all(pattern.fullmatch(m) for m in periodic.CRON_MACROS)


def test_enums_match() -> None:
    phases = [p.value for p in api.Phase]
    assert schema_at("ScheduledTask", "status.phase")["enum"] == phases
    assert schema_at("ScheduledTask", "status.attempts[].phase")["enum"] == phases
    assert schema_at("PeriodicTask", "status.recentRuns[].phase")["enum"] == [
        *phases,
        status.RUN_PENDING,
    ]
    assert schema_at("ScheduledTask", "spec.revoke.signal")["enum"] == list(
        scheduled.REVOKE_SIGNALS
    )
    assert schema_at("ScheduledTask", "spec.retry.on[]")["enum"] == list(scheduled.RETRY_ON_CHOICES)
    assert schema_at("PeriodicTask", "spec.concurrencyPolicy")["enum"] == list(
        periodic.CONCURRENCY_POLICIES
    )


def test_numeric_bounds_match() -> None:
    assert schema_at("ScheduledTask", "spec.task.priority")["maximum"] == task.PRIORITY_MAX
    assert schema_at("ScheduledTask", "spec.task.name")["maxLength"] == task.TASK_NAME_MAX_LENGTH
    assert schema_at("ScheduledTask", "spec.retry.limit")["maximum"] == scheduled.RETRY_LIMIT_MAX
    for field in ("successfulRunsHistoryLimit", "failedRunsHistoryLimit"):
        assert schema_at("PeriodicTask", f"spec.{field}")["maximum"] == periodic.HISTORY_LIMIT_MAX


@pytest.mark.parametrize(
    ("kind", "path", "key", "value"),
    [
        ("ScheduledTask", "status.error.type", "maxLength", status.ERROR_TYPE_MAX_LENGTH),
        ("ScheduledTask", "status.error.message", "maxLength", status.ERROR_MESSAGE_MAX_LENGTH),
        ("ScheduledTask", "status.error.traceback", "maxLength", status.TRACEBACK_MAX_LENGTH),
        ("ScheduledTask", "status.attempts", "maxItems", status.MAX_ATTEMPTS),
        (
            "ScheduledTask",
            "status.attempts[].error.type",
            "maxLength",
            status.ERROR_TYPE_MAX_LENGTH,
        ),
        (
            "ScheduledTask",
            "status.attempts[].error.message",
            "maxLength",
            status.ATTEMPT_ERROR_MESSAGE_MAX_LENGTH,
        ),
        ("PeriodicTask", "status.nextScheduleTimes", "maxItems", status.MAX_NEXT_SCHEDULE_TIMES),
        ("PeriodicTask", "status.recentRuns", "maxItems", status.MAX_RECENT_RUNS),
        ("PeriodicTask", "status.active", "maxItems", status.MAX_ACTIVE_RUNS),
    ],
)
def test_status_limits_match(kind: str, path: str, key: str, value: int) -> None:
    assert schema_at(kind, path)[key] == value


def test_periodic_task_names_leave_room_for_run_names() -> None:
    # Runs are named <name>-<unix seconds> (10 digits until 2286) and must be DNS labels.
    max_name = root_schema("PeriodicTask")["properties"]["metadata"]["properties"]["name"]
    assert max_name["maxLength"] + 1 + 10 <= 63


# The structural rules hold for every kind of the group, the apps' kinds included.
ALL_KINDS = (*KINDS, "CeleryApp", "ClusterCeleryApp")


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_field_is_described(kind: str) -> None:
    undescribed = [
        path
        for path, sub in walk(root_schema(kind))
        if path != "metadata" and not sub.get("description") and not path.endswith("[]")
    ]
    assert undescribed == []


def _bounded(sub: dict[str, Any]) -> bool:
    kind = sub.get("type")
    if kind == "string":
        return "maxLength" in sub or "enum" in sub or sub.get("format") == "date-time"
    if kind == "array":
        return "maxItems" in sub
    if kind == "object" and "properties" not in sub:
        return "maxProperties" in sub
    return True


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_string_list_and_map_is_bounded(kind: str) -> None:
    unbounded = [
        path
        for path, sub in walk(root_schema(kind))
        if path not in ("apiVersion", "kind", "metadata") and not _bounded(sub)
    ]
    assert unbounded == []


def test_cel_rules_name_fields_in_the_conventions_voice() -> None:
    for kind in KINDS:
        for path, sub in walk(root_schema(kind)):
            for rule in sub.get("x-kubernetes-validations", []):
                message = rule["message"]
                assert message[0].islower(), (path, message)
                assert not message.endswith("."), (path, message)


def _columns(kind: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in version(kind)["additionalPrinterColumns"]}


def test_scheduled_task_printer_columns() -> None:
    columns = _columns("ScheduledTask")
    assert [n for n, c in columns.items() if not c.get("priority")] == [
        "Task",
        "Queue",
        "Phase",
        "Ready",
        "Due",
        "Age",
    ]
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Task"]["jsonPath"] == ".spec.task.name"
    assert columns["Due"]["jsonPath"] == ".status.dueTime"
    # kubectl shows future dates in "date" columns as "<invalid>": due times are strings.
    assert columns["Due"]["type"] == "string"
    assert {n for n, c in columns.items() if c.get("priority") == 1} == {
        "Task ID",
        "Attempt",
        "Worker",
        "Error",
    }


def test_periodic_task_printer_columns() -> None:
    columns = _columns("PeriodicTask")
    assert [n for n, c in columns.items() if not c.get("priority")] == [
        "Schedule",
        "TZ",
        "Suspend",
        "Ready",
        "Last",
        "Next",
        "Age",
    ]
    # Every schedule form in one column: the operator's status.schedule.
    assert columns["Schedule"]["jsonPath"] == ".status.schedule"
    assert columns["Ready"] == _columns("ScheduledTask")["Ready"]
    assert {n for n, c in columns.items() if c.get("priority") == 1} == {"Task", "Active"}
    assert columns["Next"]["jsonPath"] == ".status.nextScheduleTimes[0]"
    assert columns["Next"]["type"] == "string"
    assert columns["Last"]["type"] == "date"
