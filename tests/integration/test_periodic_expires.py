"""PeriodicTask spec.expires on the real stack: a run nobody takes in time expires exactly
as a ScheduledTask does, counted from its own fire time."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from celery_operator.api import parse_time

from .conftest import StartOperator, Tasks, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.serial]


def test_a_run_nobody_takes_before_it_expires_ends_expired_in_the_parents_history(
    start_operator: StartOperator, tasks: Tasks, periodic: Tasks, tmp_path: Path
) -> None:
    queue = f"nobody-{tmp_path.name[-8:]}"  # no worker consumes it
    start_operator()
    created = periodic.create("stale", {
        "schedule": {"interval": "2s"},
        "task": {"name": "demo.add", "args": [1, 2], "queue": queue},
        "expires": 2,
        "maxRuns": 1,
    })
    fire = parse_time(created["metadata"]["creationTimestamp"]) + timedelta(seconds=2)
    run = f"stale-{int(fire.timestamp())}"
    wait_for(lambda: tasks.list(), 20, "the run to be created")
    assert [c["metadata"]["name"] for c in tasks.list()] == [run]
    assert tasks.get(run)["spec"]["expires"] == 2
    child = tasks.wait_phase(run, "Expired", timeout=40)
    status = child["status"]
    assert parse_time(status["dueTime"]) == fire
    assert parse_time(status["expiresAt"]) == fire + timedelta(seconds=2)
    assert parse_time(status["completionTime"]) >= fire + timedelta(seconds=2)
    expired = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (expired["status"], expired["reason"]) == ("False", "Expired")
    assert expired["message"] == (
        f"task {status['taskId']} expired at {status['expiresAt'][:19]}Z while waiting in the "
        "queue: no worker started it in time"
    )

    def history() -> list[dict[str, str]]:
        return list((periodic.get("stale").get("status") or {}).get("recentRuns") or [])

    wait_for(lambda: [r.get("phase") for r in history()] == ["Expired"], 20,
             "the parent's history to show the run Expired")
    parent = periodic.get("stale")["status"]
    assert parent["recentRuns"] == [
        {"name": run, "scheduledTime": status["dueTime"][:19] + "Z", "phase": "Expired"}
    ]
    assert parent["active"] == []
    assert parent["totalRuns"] == 1
