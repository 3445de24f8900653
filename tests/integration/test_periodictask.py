"""PeriodicTask end to end: children per fire time, missed runs, overlap, suspend, run-now."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis as redis_lib
from kubernetes.client.exceptions import ApiException

from celery_operator.api import format_time, parse_time
from celery_operator.devstack import CeleryWorker
from celery_operator.devstack.demo_app import RUNS_KEY

from .conftest import StartOperator, Tasks, gone, holds_for, wait_for, wait_for_events

pytestmark = [pytest.mark.integration, pytest.mark.serial]

PARENT_LABEL = "celeryoperator.dev/periodic-task"


def _children(tasks: Tasks, parent: str) -> list[dict[str, Any]]:
    items = [i for i in tasks.list()
             if (i["metadata"].get("labels") or {}).get(PARENT_LABEL) == parent]
    return sorted(items, key=lambda i: i["metadata"]["name"])


def _nominal(child: dict[str, Any]) -> datetime:
    return parse_time(child["metadata"]["annotations"]["celeryoperator.dev/scheduled-time"])





def _succeeded(tasks: Tasks, parent: str) -> list[dict[str, Any]]:
    return [c for c in _children(tasks, parent)
            if (c.get("status") or {}).get("phase") == "Succeeded"]


def test_interval_schedule_runs_on_time_and_children_succeed(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks, periodic: Tasks,
    results: redis_lib.Redis,
) -> None:
    start_operator()
    created = periodic.create("every2s", {
        "schedule": {"interval": "2s"},
        "task": {"name": "demo.add", "args": [2, 2]},
        "successfulRunsHistoryLimit": 20,
    })
    start = parse_time(created["metadata"]["creationTimestamp"])
    # Anchored at creation: start + k·2 s exactly, no drift, none missed.
    wait_for(lambda: any(_nominal(c) >= start + timedelta(seconds=10)
                      for c in _children(tasks, "every2s")), 20, "the run at start + 10 s")
    children = [c for c in _children(tasks, "every2s")
                if _nominal(c) <= start + timedelta(seconds=10)]
    assert [(_nominal(c) - start).total_seconds() for c in children] == [2.0, 4.0, 6.0, 8.0,
                                                                          10.0]
    for child in children:
        done = tasks.wait_phase(child["metadata"]["name"], "Succeeded", timeout=20)
        assert done["status"]["result"] == 4
        assert int(results.get(RUNS_KEY + done["status"]["taskId"])) == 1
        owner = done["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "PeriodicTask", "every2s", created["metadata"]["uid"], True)
        assert done["spec"]["task"]["headers"]["periodic_task_name"] == "every2s"
    status = periodic.get("every2s")["status"]
    # totalRuns and lastScheduleTime are written together: one run per 2 s since start.
    last = parse_time(status["lastScheduleTime"])
    assert status["totalRuns"] == int((last - start).total_seconds() // 2)
    assert status.get("missedRuns", 0) == 0
    assert len(status["nextScheduleTimes"]) == 5
    assert parse_time(status["nextScheduleTimes"][0]) == last + timedelta(seconds=2)
    assert parse_time(status["lastSuccessfulTime"]) >= start + timedelta(seconds=10)
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"


def test_history_limits_delete_old_children(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks, periodic: Tasks
) -> None:
    start_operator()
    created = periodic.create("trimmed", {
        "schedule": {"interval": "1s"},
        "task": {"name": "demo.add", "args": [1, 1]},
        "successfulRunsHistoryLimit": 2,
    })
    start = parse_time(created["metadata"]["creationTimestamp"])
    first_three = [f"trimmed-{int((start + timedelta(seconds=k)).timestamp())}"
                   for k in (1, 2, 3)]
    # The first runs succeed, then the operator deletes them (it, not a test, does).
    seen: list[dict[str, Any]] = []

    def first_succeeded() -> bool:
        try:
            seen[:] = [tasks.get(first_three[0])]
        except ApiException as exc:
            if exc.status == 404:
                return False  # not created yet
            raise
        return (seen[0].get("status") or {}).get("phase") == "Succeeded"
    wait_for(first_succeeded, 15, f"{first_three[0]} Succeeded")
    assert seen[0]["status"]["result"] == 2
    wait_for(lambda: all(gone(tasks, name) for name in first_three), 20,
          "the first three runs deleted by the history limit")
    # At rest between two runs exactly two successful runs are kept: the newest ones.
    def kept_two() -> bool:
        done = _succeeded(tasks, "trimmed")
        newest = max((_nominal(c) for c in _children(tasks, "trimmed")), default=start)
        return len(done) == 2 and all(_nominal(c) >= newest - timedelta(seconds=3)
                                      for c in done)
    wait_for(kept_two, 15, "exactly the two newest successful runs kept")
    assert periodic.get("trimmed")["status"]["totalRuns"] >= 5


@pytest.mark.parametrize(("deadline", "catch_up"), [(3600, 1), (1, 0)])
def test_operator_down_for_three_intervals_catches_up_once_or_not_at_all(
    deadline: int, catch_up: int, celery_worker: CeleryWorker, start_operator: StartOperator,
    tasks: Tasks, periodic: Tasks, results: redis_lib.Redis,
) -> None:
    every = 10  # room for a slow restart: the operator plans before the next fire time
    operator = start_operator()
    created = periodic.create("catchup", {
        "schedule": {"interval": f"{every}s"},
        "task": {"name": "demo.add", "args": [1, 2]},
        "startingDeadlineSeconds": deadline,
        "successfulRunsHistoryLimit": 50,
    })
    anchor = parse_time(created["metadata"]["creationTimestamp"])
    wait_for(lambda: len(_children(tasks, "catchup")) >= 1, every + 10, "a first run")
    operator.kill()
    before = {c["metadata"]["name"]: _nominal(c) for c in _children(tasks, "catchup")}
    last_run = max(before.values())
    # Stay down for three intervals and come back 1 s after the third missed fire time, so
    # the restarted operator plans before the next one (even if it takes 8 s to start).
    back = last_run + timedelta(seconds=3 * every + 1)
    time.sleep(max((back - datetime.now(UTC)).total_seconds(), 0))
    start_operator()
    # The catch-up decision is made at once; the next regular run comes after it. A run
    # due before the restart is a catch-up (judged by fire time, not by when the restart
    # returned: a slow start once counted the first regular run as one).
    wait_for(lambda: any(_nominal(c) > back for c in _children(tasks, "catchup")), every + 10,
          "the first regular run after the restart")
    new = [c for c in _children(tasks, "catchup") if c["metadata"]["name"] not in before]
    caught = [c for c in new if _nominal(c) < back]
    assert len(caught) == catch_up, [c["metadata"]["name"] for c in new]
    if caught:  # the catch-up is the most recent missed time, nothing older
        assert _nominal(caught[0]) == last_run + timedelta(seconds=3 * every)
    assert all((_nominal(c) - anchor).total_seconds() % every == 0 for c in new)
    # Every fire time between the last run before the outage and the first run after it
    # never ran: all of them are counted as missed.
    first_new = min(_nominal(c) for c in new)
    never_ran = int((first_new - last_run).total_seconds() // every) - 1
    assert never_ran == 3 - catch_up
    wait_for(lambda: periodic.get("catchup")["status"].get("missedRuns", 0) == never_ran, 10,
          "missedRuns")
    # Never a duplicate execution: each run's task ran once.
    for name in [*before, *(c["metadata"]["name"] for c in new)]:
        done = tasks.wait_phase(name, "Succeeded", timeout=20)
        assert int(results.get(RUNS_KEY + done["status"]["taskId"])) == 1


def test_forbid_skips_while_a_run_is_active(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks, periodic: Tasks
) -> None:
    start_operator()
    # Every run takes 4 s of a 3 s interval: each run's next fire time falls in it (1 s
    # before it ends) and is skipped, the one after comes 2 s after it ended and runs.
    created = periodic.create("forbid", {
        "schedule": {"interval": "3s"},
        "task": {"name": "demo.sleep", "args": [4]},
        "concurrencyPolicy": "Forbid",
        "successfulRunsHistoryLimit": 50,
    })
    start = parse_time(created["metadata"]["creationTimestamp"])
    third = start + timedelta(seconds=15)
    wait_for(lambda: (periodic.get("forbid").get("status") or {}).get("lastScheduleTime")
          == format_time(third), 30, "the third run (start + 15 s)")
    status = periodic.get("forbid")["status"]
    assert [(_nominal(c) - start).total_seconds() for c in _children(tasks, "forbid")] == [
        3.0, 9.0, 15.0]
    assert (status["totalRuns"], status["skippedRuns"]) == (3, 2)
    assert status["active"] == [{"name": f"forbid-{int(third.timestamp())}",
                                 "scheduledTime": format_time(third)}]


def test_replace_revokes_the_running_one(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks, periodic: Tasks
) -> None:
    start_operator()
    periodic.create("replace", {
        "schedule": {"interval": "3s"},
        "task": {"name": "demo.sleep", "args": [30]},
        "concurrencyPolicy": "Replace",
        "successfulRunsHistoryLimit": 50,
        "failedRunsHistoryLimit": 50,
    })
    wait_for(lambda: len(_children(tasks, "replace")) >= 2, 15, "a second run")
    first, second = (c["metadata"]["name"] for c in _children(tasks, "replace")[:2])
    revoked = tasks.wait_phase(first, "Revoked", timeout=15)
    assert revoked["spec"]["revoke"]["terminate"] is True
    # The replacement runs; only it is active until the next fire time replaces it too.
    assert "revoke" not in tasks.wait_phase(second, "Started", timeout=15)["spec"]
    wait_for(lambda: [a["name"] for a in periodic.get("replace")["status"]["active"]] in (
        [second], [c["metadata"]["name"] for c in _children(tasks, "replace")[2:3]]), 10,
        "exactly one active run")


def test_suspend_pauses_and_resume_catches_up_once(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks, periodic: Tasks
) -> None:
    start_operator()
    periodic.create("pausable", {
        "schedule": {"interval": "2s"},
        "task": {"name": "demo.add", "args": [1, 1]},
        "suspend": True,
        "successfulRunsHistoryLimit": 50,
    })
    wait_for(lambda: len((periodic.get("pausable").get("status") or {}).get(
        "nextScheduleTimes") or []) == 5, 10, "next times shown while suspended")
    holds_for(lambda: _children(tasks, "pausable") == [], 7, "no run while suspended")
    periodic.patch_spec("pausable", {"suspend": False})
    resumed_at = datetime.now(UTC)
    wait_for(lambda: any(_nominal(c) > resumed_at for c in _children(tasks, "pausable")), 10,
          "the first regular run after resuming")
    caught_up = [c for c in _children(tasks, "pausable") if _nominal(c) <= resumed_at]
    assert len(caught_up) == 1  # the most recent missed time, not one per missed time
    # Every fire time before it, from the first one (start + 2 s), was missed.
    start = parse_time(periodic.get("pausable")["metadata"]["creationTimestamp"])
    missed = int((_nominal(caught_up[0]) - start).total_seconds() // 2) - 1
    assert missed >= 2  # suspended for 7 s or more: at least three fire times passed
    wait_for(lambda: periodic.get("pausable")["status"].get("missedRuns") == missed, 10,
          f"missedRuns == {missed}")


def test_run_now_annotation_creates_one_extra_run(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks, periodic: Tasks,
    custom: Any, namespace: str, core: Any,
) -> None:
    start_operator()
    periodic.create("manual", {
        "schedule": {"cron": "0 0 1 1 *"},  # once a year: only the manual run happens now
        "task": {"name": "demo.add", "args": [5, 5]},
    })
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    custom.patch_namespaced_custom_object(
        "celeryoperator.dev", "v1alpha1", namespace, "periodictasks", "manual",
        {"metadata": {"annotations": {"celeryoperator.dev/run-requested-at": stamp}}},
    )
    wait_for(lambda: len(_children(tasks, "manual")) == 1, 10, "the manual run")
    child = _children(tasks, "manual")[0]
    assert tasks.wait_phase(child["metadata"]["name"], "Succeeded", 20)["status"]["result"] == 10
    assert periodic.get("manual")["status"]["lastHandledRunRequest"] == stamp
    holds_for(lambda: len(_children(tasks, "manual")) == 1, 3, "acknowledged: not run again")
    events = wait_for_events(core, namespace, "manual",
                             lambda es: "RunRequested" in [r for _, r, _ in es])
    assert "RunRequested" in [r for _, r, _ in events]


def test_spec_change_applies_from_the_next_run(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks, periodic: Tasks
) -> None:
    start_operator()
    periodic.create("changing", {
        "schedule": {"interval": "2s"},
        "task": {"name": "demo.add", "args": [1, 1]},
        "successfulRunsHistoryLimit": 50,
    })
    wait_for(lambda: len(_children(tasks, "changing")) >= 1, 10, "a first run")
    updated = periodic.patch_spec("changing", {"task": {"name": "demo.add", "args": [100, 1]}})
    changed_at = datetime.now(UTC)
    wait_for(lambda: any(_nominal(c) > changed_at + timedelta(seconds=2.5)
                      for c in _children(tasks, "changing")), 10, "a run after the change")
    later = [c for c in _children(tasks, "changing")
             if _nominal(c) > changed_at + timedelta(seconds=2.5)]
    assert later[0]["spec"]["task"]["args"] == [100, 1]
    wait_for(lambda: periodic.get("changing")["status"].get("observedGeneration")
          == updated["metadata"]["generation"], 10, "observedGeneration")
