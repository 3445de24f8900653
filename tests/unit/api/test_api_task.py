"""The shared `task` sub-object."""

from __future__ import annotations

from typing import Any

import pytest

from celery_operator.api import InvalidSpec, TaskCall, parse_task, render_task


def _paths(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidSpec) as info:
        parse_task(raw, "spec.task")
    return [e.path for e in info.value.errors]


def test_full_task() -> None:
    call = parse_task(
        {
            "name": "reports.tasks.send",
            "args": [42, None, {"a": [1]}],
            "kwargs": {"format": "pdf", "n": None},
            "queue": "high_priority",
            "routingKey": "reports",
            "exchange": "tasks",
            "priority": 9,
            "headers": {"x-team": "reports"},
            "timeLimit": 60,
            "softTimeLimit": 50.5,
        },
        "spec.task",
    )
    assert call == TaskCall(
        name="reports.tasks.send",
        args=(42, None, {"a": [1]}),
        kwargs={"format": "pdf", "n": None},
        queue="high_priority",
        routing_key="reports",
        exchange="tasks",
        priority=9,
        headers={"x-team": "reports"},
        time_limit=60.0,
        soft_time_limit=50.5,
    )
    assert call.send_task_options() == {
        "queue": "high_priority",
        "routing_key": "reports",
        "exchange": "tasks",
        "priority": 9,
        "headers": {"x-team": "reports"},
        "time_limit": 60.0,
        "soft_time_limit": 50.5,
    }


def test_minimal_task() -> None:
    call = parse_task({"name": "demo.add"}, "spec.task")
    assert call == TaskCall(name="demo.add")
    assert call.args == ()
    assert call.kwargs == {}
    assert call.send_task_options() == {}


@pytest.mark.parametrize(
    "name", ["demo.add", "a", "_private", "proj.tasks.Add", "module:func", "my-app.tasks.x_1"]
)
def test_good_task_names(name: str) -> None:
    assert parse_task({"name": name}, "spec.task").name == name


@pytest.mark.parametrize(
    "name", ["", "1demo", "demo..add", "demo.add.", ".demo", "demo add", "demo/add", "x" * 201]
)
def test_bad_task_names(name: str) -> None:
    assert _paths({"name": name}) == ["spec.task.name"]


def test_missing_name_is_required() -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_task({"args": [1]}, "spec.task")
    assert str(info.value) == "spec.task.name: Required value"


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"args": {"x": 1}}, "spec.task.args"),
        ({"args": "1, 2"}, "spec.task.args"),
        ({"kwargs": [1]}, "spec.task.kwargs"),
        ({"priority": 256}, "spec.task.priority"),
        ({"priority": -1}, "spec.task.priority"),
        ({"priority": 1.5}, "spec.task.priority"),
        ({"priority": True}, "spec.task.priority"),
        ({"queue": 5}, "spec.task.queue"),
        ({"headers": {"a": 1}}, "spec.task.headers[a]"),
        ({"timeLimit": 0}, "spec.task.timeLimit"),
        ({"softTimeLimit": -1}, "spec.task.softTimeLimit"),
        ({"timeLimit": 10, "softTimeLimit": 10}, "spec.task.softTimeLimit"),
        ({"timeLimit": 10, "softTimeLimit": 20}, "spec.task.softTimeLimit"),
    ],
)
def test_bad_fields_are_named(raw: dict[str, Any], path: str) -> None:
    assert _paths({"name": "demo.add", **raw}) == [path]


def test_all_problems_are_reported_at_once() -> None:
    assert _paths({"priority": 300, "timeLimit": -1}) == [
        "spec.task.name",
        "spec.task.priority",
        "spec.task.timeLimit",
    ]


def test_render_is_the_inverse_of_parse() -> None:
    raw = {
        "name": "demo.echo_json",
        "args": [1],
        "kwargs": {"a": {"b": None}},
        "queue": "q",
        "priority": 0,
        "headers": {"h": "v"},
        "timeLimit": 5.0,
    }
    call = parse_task(raw, "spec.task")
    assert render_task(call) == raw
    assert parse_task(render_task(call), "spec.task") == call
