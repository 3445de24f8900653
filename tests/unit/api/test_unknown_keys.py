"""Mistyped keys never change a schedule silently: the slips table, the CRDs and the
parsers agree, and every unknown key is refused with its path (and a hint when one fits)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from api_crd_schema import root_schema, schema_at, walk

from celery_operator.api import (
    PERIODIC_KIND,
    SCHEDULED_KIND,
    InvalidSpec,
    parse_periodic_task_spec,
    parse_scheduled_task_spec,
    periodic,
    scheduled,
    task,
)
from celery_operator.api.slips import CRD_SLIPS, INT_OR_STRING, slip_type

TASK = {"name": "demo.add", "args": [1, 2]}
BASE: dict[str, dict[str, Any]] = {
    SCHEDULED_KIND: {"task": TASK},
    PERIODIC_KIND: {"schedule": {"crontab": {"minute": "0", "hour": "9"}}, "task": TASK},
}
PARSE: dict[str, Callable[[Any], Any]] = {
    SCHEDULED_KIND: parse_scheduled_task_spec,
    PERIODIC_KIND: parse_periodic_task_spec,
}
# Every field of each object the parsers read, as the model declares them.
MODEL_FIELDS: list[tuple[str, str, tuple[str, ...]]] = [
    (SCHEDULED_KIND, "spec", scheduled.SPEC_FIELDS),
    (SCHEDULED_KIND, "spec.task", task.TASK_FIELDS),
    (SCHEDULED_KIND, "spec.retry", scheduled.RETRY_FIELDS),
    (SCHEDULED_KIND, "spec.retry.backoff", scheduled.BACKOFF_FIELDS),
    (SCHEDULED_KIND, "spec.revoke", scheduled.REVOKE_FIELDS),
    (PERIODIC_KIND, "spec", periodic.SPEC_FIELDS),
    (PERIODIC_KIND, "spec.task", task.TASK_FIELDS),
    (PERIODIC_KIND, "spec.schedule", periodic.SCHEDULE_FIELDS),
    (PERIODIC_KIND, "spec.schedule.crontab", periodic.CRONTAB_FIELDS),
]
SLIPS = [
    (kind, path, key, message)
    for kind, table in CRD_SLIPS.items()
    for path, slips in table.items()
    for key, message in slips.items()
]


def errors(kind: str, spec: Any) -> list[str]:
    with pytest.raises(InvalidSpec) as info:
        PARSE[kind](spec)
    return [str(e) for e in info.value.errors]


def with_key(kind: str, path: str, key: str, value: Any) -> dict[str, Any]:
    """BASE[kind] with `key: value` added to the object at `path` (made if missing)."""
    spec = copy.deepcopy(BASE[kind])
    target = spec
    for part in path.split(".")[1:]:
        target = target.setdefault(part, {})
    target[key] = value
    return spec


def _slip_rules(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The `!has(self.<key>)` rules of an object schema, by key."""
    found = {}
    for rule in schema.get("x-kubernetes-validations", []):
        text = rule["rule"]
        if text.startswith("!has(self.") and text.endswith(")") and text.count("(") == 1:
            found[text[len("!has(self."):-1]] = rule
    return found


# ---- the table and the CRDs ----------------------------------------------------------------


@pytest.mark.parametrize(("kind", "path", "key", "message"), SLIPS)
def test_the_crd_declares_each_slip_and_refuses_it_with_the_tables_message(
    kind: str, path: str, key: str, message: str
) -> None:
    schema = schema_at(kind, path)
    declared = schema["properties"][key]
    # Typed as such a value usually is (day_of_week: 1 as well as "1"), so CEL can see it.
    if slip_type(key) == INT_OR_STRING:
        assert declared.get("x-kubernetes-int-or-string") is True
    else:
        assert declared["type"] == slip_type(key)
    rule = _slip_rules(schema)[key]
    assert " ".join(rule["message"].split()) == message
    assert rule["fieldPath"] == f".{key}"
    assert rule["reason"] == "FieldValueForbidden"


@pytest.mark.parametrize("kind", [SCHEDULED_KIND, PERIODIC_KIND])
def test_every_slip_the_crd_refuses_is_in_the_table(kind: str) -> None:
    in_crd = {
        (f"spec.{path}" if path else "spec", key)
        for path, sub in [("", schema_at(kind, "spec")), *walk(schema_at(kind, "spec"))]
        for key in _slip_rules(dict(sub))
    }
    in_table = {(path, key) for path, slips in CRD_SLIPS[kind].items() for key in slips}
    assert in_crd == in_table
    not_fields = {
        path for path, sub in walk(root_schema(kind)) if "Not a field" in sub.get("description", "")
    }
    assert not_fields == {f"{path}.{key}" for path, key in in_table}


@pytest.mark.parametrize(("kind", "path", "fields"), MODEL_FIELDS)
def test_the_model_knows_exactly_the_crds_fields(
    kind: str, path: str, fields: tuple[str, ...]
) -> None:
    declared = set(schema_at(kind, path)["properties"])
    slips = set(CRD_SLIPS[kind].get(path, {}))
    assert set(fields) == declared - slips
    assert not set(fields) & slips


# ---- the parsers -------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "path", "key", "message"), SLIPS)
@pytest.mark.parametrize("value", ["1", 1])
def test_the_parsers_refuse_each_slip_with_the_crds_message(
    kind: str, path: str, key: str, message: str, value: Any
) -> None:
    spec = with_key(kind, path, key, value)
    assert errors(kind, spec) == [f"{path}.{key}: Forbidden: {message}"]


def test_a_celery_style_day_of_week_never_makes_a_weekly_job_daily() -> None:
    spec = {
        "schedule": {"crontab": {"minute": "0", "hour": "9", "day_of_week": "1"}},
        "task": TASK,
    }
    assert errors(PERIODIC_KIND, spec) == [
        "spec.schedule.crontab.day_of_week: Forbidden: use dayOfWeek"
    ]
    spec["schedule"]["crontab"] = {"minute": "0", "hour": "9", "dayOfWeek": "1"}
    assert parse_periodic_task_spec(spec).schedule.cron == "0 9 * * 1"


@pytest.mark.parametrize(
    ("kind", "path", "key", "message"),
    [
        (SCHEDULED_KIND, "spec.task", "qeueu", "Forbidden: unknown field, did you mean queue?"),
        (SCHEDULED_KIND, "spec.task", "RoutingKey", "Forbidden: unknown field, did you mean "
         "routingKey?"),
        (SCHEDULED_KIND, "spec", "ttl_seconds_after_finished", "Forbidden: unknown field, did "
         "you mean ttlSecondsAfterFinished?"),
        (SCHEDULED_KIND, "spec.retry", "max_retries", "Forbidden: unknown field"),
        (SCHEDULED_KIND, "spec.retry.backoff", "initial_seconds", "Forbidden: unknown field, "
         "did you mean initialSeconds?"),
        (SCHEDULED_KIND, "spec.revoke", "signl", "Forbidden: unknown field, did you mean "
         "signal?"),
        (SCHEDULED_KIND, "spec", "bogus", "Forbidden: unknown field"),
        (PERIODIC_KIND, "spec", "successful_runs_history_limit", "Forbidden: unknown field, "
         "did you mean successfulRunsHistoryLimit?"),
        (PERIODIC_KIND, "spec.schedule", "TimeZone", "Forbidden: unknown field, did you mean "
         "timeZone?"),
        (PERIODIC_KIND, "spec.schedule", "tz", "Forbidden: unknown field"),
        (PERIODIC_KIND, "spec.schedule.crontab", "dayofweek", "Forbidden: unknown field, did "
         "you mean dayOfWeek?"),
        (PERIODIC_KIND, "spec.schedule.crontab", "Hour", "Forbidden: unknown field, did you "
         "mean hour?"),
    ],
)
def test_other_unknown_keys_are_refused_with_a_hint_when_one_fits(
    kind: str, path: str, key: str, message: str
) -> None:
    assert errors(kind, with_key(kind, path, key, 1)) == [f"{path}.{key}: {message}"]


def test_every_unknown_key_is_reported_in_one_pass() -> None:
    spec = {
        "schedule": {"crontab": {"hour": "9", "day_of_month": "1"}, "time_zone": "Europe/Paris"},
        "task": {**TASK, "routing_key": "r"},
        "max_runs": 3,
        "bogus": True,
    }
    assert sorted(errors(PERIODIC_KIND, spec)) == [
        "spec.bogus: Forbidden: unknown field",
        "spec.max_runs: Forbidden: use maxRuns",
        "spec.schedule.crontab.day_of_month: Forbidden: use dayOfMonth",
        "spec.schedule.time_zone: Forbidden: use timeZone",
        "spec.task.routing_key: Forbidden: use routingKey",
    ]
