"""ScheduledTask spec parsing: good specs, bad specs with field paths, defaults."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from api_crd_schema import with_defaults

from celery_operator.api import (
    InvalidSpec,
    RetryPolicy,
    RevokeRequest,
    ScheduledTaskSpec,
    TaskCall,
    parse_scheduled_task_spec,
)
from celery_operator.api import defaults as d

TASK = {"name": "demo.add", "args": [1, 2]}


def _errors(spec: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidSpec) as info:
        parse_scheduled_task_spec(spec)
    return [str(e) for e in info.value.errors]


def _paths(spec: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidSpec) as info:
        parse_scheduled_task_spec(spec)
    return [e.path for e in info.value.errors]


def test_immediate_task_gets_the_defaults() -> None:
    spec = parse_scheduled_task_spec({"task": TASK})
    assert spec == ScheduledTaskSpec(task=TaskCall(name="demo.add", args=(1, 2)))
    assert spec.eta is None and spec.countdown is None
    assert spec.retry == RetryPolicy(
        limit=d.RETRY_LIMIT,
        initial_seconds=d.RETRY_INITIAL_SECONDS,
        factor=d.RETRY_FACTOR,
        max_seconds=d.RETRY_MAX_SECONDS,
        on=frozenset({"Failed", "Lost"}),
    )
    assert spec.revoke is None
    assert spec.ttl_seconds_after_finished is None


def test_everything_set() -> None:
    spec = parse_scheduled_task_spec(
        {
            "task": TASK,
            "eta": "2030-01-01T18:00:00+09:00",
            "expires": 3600,
            "retry": {
                "limit": 3,
                "backoff": {"initialSeconds": 1, "factor": 1.5, "maxSeconds": 30},
                "on": ["Lost"],
            },
            "revoke": {"terminate": True, "signal": "SIGKILL"},
            "ttlSecondsAfterFinished": 0,
        }
    )
    assert spec.eta == datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    assert spec.expires_seconds == 3600.0 and spec.expires_at is None
    assert spec.retry == RetryPolicy(3, 1.0, 1.5, 30.0, frozenset({"Lost"}))
    assert spec.revoke == RevokeRequest(terminate=True, signal="SIGKILL")
    assert spec.ttl_seconds_after_finished == 0


def test_countdown_and_expiry_time() -> None:
    spec = parse_scheduled_task_spec(
        {"task": TASK, "countdown": 600, "expires": "2030-01-01T00:00:00Z"}
    )
    assert spec.countdown == 600.0
    assert spec.expires_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert spec.expires_seconds is None


def test_empty_revoke_means_cancel_with_defaults() -> None:
    spec = parse_scheduled_task_spec({"task": TASK, "revoke": {}})
    assert spec.revoke == RevokeRequest(terminate=False, signal="SIGTERM")


def test_retry_on_nothing_is_allowed() -> None:
    assert parse_scheduled_task_spec({"task": TASK, "retry": {"on": []}}).retry.on == frozenset()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"eta": "2030-01-01T00:00:00Z", "countdown": 5},
            ["spec.countdown: Forbidden: may not set both eta and countdown"],
        ),
        (
            {"countdown": -1},
            ["spec.countdown: Invalid value: -1: must be greater than or equal to 0"],
        ),
        ({"countdown": "10"}, ["spec.countdown: must be a number, not string"]),
        (
            {"eta": "2030-01-01 00:00:00Z"},
            [
                'spec.eta: Invalid value: "2030-01-01 00:00:00Z": must be an RFC 3339 '
                "date-time such as 2030-01-01T09:00:00Z"
            ],
        ),
        (
            {"expires": -5},
            [
                "spec.expires: Invalid value: -5: must be a number of seconds greater than or "
                "equal to 0, or an RFC 3339 date-time such as 2030-01-01T09:00:00Z"
            ],
        ),
    ],
)
def test_error_messages(spec: dict[str, Any], expected: list[str]) -> None:
    assert _errors({"task": TASK, **spec}) == expected


@pytest.mark.parametrize(
    ("spec", "paths"),
    [
        ({"task": None}, ["spec.task"]),
        ({"task": "demo.add"}, ["spec.task"]),
        ({"task": {"name": "bad name"}}, ["spec.task.name"]),
        ({"task": TASK, "eta": "2030-02-30T00:00:00Z"}, ["spec.eta"]),
        ({"task": TASK, "eta": "2030-01-01T00:00:00"}, ["spec.eta"]),
        ({"task": TASK, "expires": "3600"}, ["spec.expires"]),
        ({"task": TASK, "expires": 1.5}, ["spec.expires"]),
        ({"task": TASK, "retry": {"limit": 101}}, ["spec.retry.limit"]),
        ({"task": TASK, "retry": {"limit": -1}}, ["spec.retry.limit"]),
        ({"task": TASK, "retry": {"backoff": {"factor": 0.5}}}, ["spec.retry.backoff.factor"]),
        (
            {"task": TASK, "retry": {"backoff": {"initialSeconds": 60, "maxSeconds": 30}}},
            ["spec.retry.backoff.maxSeconds"],
        ),
        ({"task": TASK, "retry": {"on": ["Failed", "Timeout"]}}, ["spec.retry.on[1]"]),
        ({"task": TASK, "retry": []}, ["spec.retry"]),
        ({"task": TASK, "revoke": {"signal": "SIGSTOP"}}, ["spec.revoke.signal"]),
        ({"task": TASK, "revoke": {"terminate": "yes"}}, ["spec.revoke.terminate"]),
        ({"task": TASK, "ttlSecondsAfterFinished": -1}, ["spec.ttlSecondsAfterFinished"]),
    ],
)
def test_bad_specs_name_the_field(spec: dict[str, Any], paths: list[str]) -> None:
    assert _paths(spec) == paths


def test_not_an_object() -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_scheduled_task_spec([])  # type: ignore[arg-type]
    assert str(info.value) == "spec: must be an object, not array"


def test_unknown_fields_are_refused() -> None:
    # A field this operator does not know is one it would not honour: refused, never
    # silently ignored (tests/unit/api/test_unknown_keys.py has the rest).
    assert _errors({"task": TASK, "future": 1}) == ["spec.future: Forbidden: unknown field"]


@pytest.mark.parametrize(
    "spec",
    [
        {"task": TASK},
        {"task": TASK, "countdown": 600},
        {"task": TASK, "revoke": {}},
        {"task": TASK, "retry": {"limit": 2}},
        {"task": TASK, "retry": {"backoff": {"factor": 3}}},
        {"task": {"name": "x"}, "eta": "2030-01-01T00:00:00Z", "expires": 5},
    ],
)
def test_same_spec_with_and_without_schema_defaults(spec: dict[str, Any]) -> None:
    assert parse_scheduled_task_spec(spec) == parse_scheduled_task_spec(
        with_defaults("ScheduledTask", spec)
    )
