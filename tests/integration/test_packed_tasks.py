"""Tasks that wait a long time are held packed (as JSON) and act as any other when
their time comes, they change, or the operator restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from celery_operator.api import format_time
from celery_operator.devstack import CeleryWorker

from .conftest import StartOperator, Tasks, metric_sum, wait_for

pytestmark = [pytest.mark.integration]

PACKED = "celery_operator_scheduled_tasks_packed"


def test_packed_tasks_run_change_and_restart_as_any_other(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks,
) -> None:
    operator = start_operator()
    later = format_time(datetime.now(UTC) + timedelta(hours=2))
    for name, args in (("runs", [2, 3]), ("waits", [4, 5]), ("revoked", [6, 7])):
        tasks.create(name, {"task": {"name": "demo.add", "args": args}, "eta": later})
    for name in ("runs", "waits", "revoked"):
        tasks.wait_phase(name, "Scheduled", timeout=30)
    wait_for(lambda: metric_sum(operator, PACKED) == 3, 30, "three waiting tasks packed")

    # A packed task whose due time moves to now runs, with its whole status.
    tasks.patch_spec("runs", {"eta": format_time(datetime.now(UTC))})
    status = tasks.wait_phase("runs", "Succeeded", timeout=30)["status"]
    assert status["result"] == 5 and status["attempt"] == 1
    assert status["worker"] == celery_worker.name
    # A packed task revoked before its time never runs.
    tasks.patch_spec("revoked", {"revoke": {}})
    assert "result" not in tasks.wait_phase("revoked", "Revoked", timeout=30)["status"]
    # Finished, with nothing more to do (no TTL): packed again, as the waiting one is.
    wait_for(lambda: metric_sum(operator, PACKED) == 3, 30, "all three packed again")
    assert tasks.get("waits")["status"]["phase"] == "Scheduled"
    before = {name: tasks.get(name)["metadata"]["resourceVersion"]
              for name in ("runs", "waits", "revoked")}
    operator.stop()

    # A restart takes them in from the list, packs them again and writes nothing.
    operator = start_operator()
    wait_for(lambda: metric_sum(operator, PACKED) == 3, 30, "packed after the restart")
    assert metric_sum(operator, "celery_operator_api_writes_total") == 0
    assert {name: tasks.get(name)["metadata"]["resourceVersion"]
            for name in before} == before
    tasks.patch_spec("waits", {"eta": format_time(datetime.now(UTC))})
    assert tasks.wait_phase("waits", "Succeeded", timeout=30)["status"]["result"] == 9
