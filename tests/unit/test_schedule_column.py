"""status.schedule, which the SCHEDULE column of `kubectl get pt` shows: every schedule form
described from the parsed spec, written once, and cleared while the spec is invalid."""

from __future__ import annotations

from typing import Any

import pytest

from celery_operator.api import parse_periodic_task_spec, render_periodic_task_spec
from celery_operator.api.limits import fit_status

from .test_periodic_plan import condition, m, new


@pytest.mark.parametrize(
    ("schedule", "shown"),
    [
        ({"cron": "0 9 * * 1"}, "0 9 * * 1"),
        ({"cron": "0  9 * *   1"}, "0 9 * * 1"),
        ({"cron": "@daily"}, "0 0 * * *"),
        ({"crontab": {"minute": "0", "hour": "*/2"}}, "crontab: 0 */2 * * *"),
        ({"crontab": {}}, "crontab: * * * * *"),
        ({"crontab": {"dayOfWeek": "mon-fri", "hour": "7"}, "timeZone": "Asia/Seoul"},
         "crontab: * 7 * * mon-fri"),
        ({"interval": "30s"}, "every 30s"),
        ({"interval": "90m"}, "every 1h30m"),
        ({"interval": "1.5s"}, "every 1.5s"),
    ],
)
def test_every_schedule_form_is_described(schedule: dict[str, Any], shown: str) -> None:
    spec = parse_periodic_task_spec({"schedule": schedule, "task": {"name": "demo.add"}})
    assert spec.schedule.description == shown


def test_a_crontab_renders_back_as_a_crontab() -> None:
    raw = {"schedule": {"crontab": {"hour": "7", "dayOfWeek": "1"}}, "task": {"name": "x"}}
    spec = parse_periodic_task_spec(raw)
    rendered = render_periodic_task_spec(spec)
    assert rendered["schedule"] == {
        "timeZone": "UTC",
        "crontab": {
            "minute": "*", "hour": "7", "dayOfMonth": "*", "monthOfYear": "*", "dayOfWeek": "1"
        },
    }
    assert parse_periodic_task_spec(rendered) == spec


def test_the_planner_writes_the_description_once_and_follows_spec_changes() -> None:
    p = new({"crontab": {"minute": "0", "hour": "*/2"}})
    p.settle(m(1))
    assert p.status["schedule"] == "crontab: 0 */2 * * *"
    p.edit(schedule={"interval": "30s"})
    p.settle(m(2))
    assert p.status["schedule"] == "every 30s"


def test_an_invalid_spec_clears_the_schedule_and_is_not_ready() -> None:
    p = new({"cron": "0 9 * * 1"})
    p.settle(m(1))
    assert p.status["schedule"] == "0 9 * * 1"
    p.edit(schedule={"cron": "0 9 * * 1", "timeZone": "Mars/Base"})
    p.settle(m(2))
    assert "schedule" not in p.status
    assert condition(p, "Ready")["status"] == "False"
    assert condition(p, "Stalled")["status"] == "True"


def test_the_longest_description_fits_the_status_limit() -> None:
    field = "0" + ",".join(["1"] * 32)  # 64 characters, the crontab field limit
    crontab = {"minute": field, "hour": field, "monthOfYear": field, "dayOfWeek": field}
    spec = parse_periodic_task_spec({"schedule": {"crontab": crontab}, "task": {"name": "x"}})
    shown = spec.schedule.description
    assert len(field) == 64 and len(shown) > 256
    assert fit_status("periodictasks", {"schedule": shown}) == {"schedule": shown}
