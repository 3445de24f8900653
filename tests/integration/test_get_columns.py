"""`kubectl get pt` and `kubectl get st` read at a glance, filled in by the real operator: one
SCHEDULE column for every schedule form, and READY from the Ready condition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from celery_operator.api import format_time
from celery_operator.devstack import KubeEnv

from .conftest import StartOperator, Tasks, wait_for

pytestmark = pytest.mark.integration

TASK = {"name": "demo.add", "args": [1, 2]}


def table(out: str) -> dict[str, dict[str, str]]:
    """kubectl's table output as rows by NAME; a column starts where its header starts
    (values may hold spaces: "0 9 * * 1")."""
    header, *lines = out.splitlines()
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    names = header.split()
    rows = {}
    for line in lines:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows[cells[0]] = dict(zip(names, cells, strict=True))
    return rows


def test_schedule_and_ready_columns_show_every_form_and_a_broken_spec(
    kube: KubeEnv, namespace: str, start_operator: StartOperator, tasks: Tasks, periodic: Tasks
) -> None:
    start_operator()
    periodic.create("weekly", {"schedule": {"cron": "0 9 * * 1"}, "task": TASK})
    periodic.create("two-hourly", {
        "schedule": {"crontab": {"minute": "0", "hour": "*/2"}, "timeZone": "Asia/Seoul"},
        "task": TASK,
    })
    periodic.create("hourly", {"schedule": {"interval": "1h"}, "task": TASK, "suspend": True})
    periodic.create("broken", {
        "schedule": {"cron": "0 9 * * 1", "timeZone": "Mars/Base"}, "task": TASK,
    })
    now = datetime.now(UTC)
    tasks.create("later", {"task": TASK, "eta": format_time(now + timedelta(days=1))})
    tasks.create("stale", {"task": TASK, "eta": format_time(now - timedelta(minutes=10)),
                           "expires": 60})

    def get(resource: str) -> dict[str, dict[str, str]]:
        return table(kube.kubectl("get", "-n", namespace, resource).stdout)

    def filled(resource: str, count: int) -> bool:
        rows = get(resource)
        return len(rows) == count and all(r["READY"] for r in rows.values())

    wait_for(lambda: filled("pt", 4), 30, "READY on every PeriodicTask")
    wait_for(lambda: filled("st", 2), 30, "READY on every ScheduledTask")
    pt = get("pt")
    shown = {name: (r["SCHEDULE"], r["TZ"], r["SUSPEND"], r["READY"]) for name, r in pt.items()}
    assert shown == {
        "weekly": ("0 9 * * 1", "UTC", "false", "True"),
        "two-hourly": ("crontab: 0 */2 * * *", "Asia/Seoul", "false", "True"),
        "hourly": ("every 1h", "UTC", "true", "True"),
        # Stalled: nothing runs, and the row says so.
        "broken": ("", "Mars/Base", "false", "False"),
    }
    assert pt["weekly"]["NEXT"].endswith("T09:00:00Z")
    assert pt["broken"]["NEXT"] == ""
    st = get("st")
    assert {name: (r["PHASE"], r["READY"]) for name, r in st.items()} == {
        "later": ("Scheduled", "True"),
        "stale": ("Expired", "False"),
    }
