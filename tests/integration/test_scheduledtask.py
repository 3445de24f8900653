"""ScheduledTask end to end: the operator as a process, a real worker, real Redis."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis as redis_lib

from celery_operator.api import parse_time
from celery_operator.devstack import CeleryWorker
from celery_operator.devstack.demo_app import RUNS_KEY, STARTED_KEY
from celery_operator.scheduling.task_lifecycle import task_id_for

from .conftest import StartOperator, Tasks, events_for, wait_for, wait_for_events

pytestmark = [pytest.mark.integration, pytest.mark.serial]


def test_immediate_task_succeeds_with_its_result_in_status(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks, core, namespace: str
) -> None:
    operator = start_operator()
    tasks.create("add", {"task": {"name": "demo.add", "args": [2, 3]}})
    obj = tasks.wait_phase("add", "Succeeded", timeout=30)
    status = obj["status"]
    assert status["result"] == 5
    assert status["taskId"] and status["attempt"] == 1
    assert status["worker"] == celery_worker.name
    assert parse_time(status["completionTime"]) >= parse_time(status["startTime"])
    assert parse_time(status["dueTime"]) == parse_time(obj["metadata"]["creationTimestamp"])
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {"Ready": "True", "Stalled": "False"}
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    # What the Succeeded Event said is the Ready condition's message.
    assert [c["message"] for c in status["conditions"] if c["type"] == "Ready"] == [
        f"task {status['taskId']} succeeded on {celery_worker.name}"]
    # Write budget: claim and finish. The publish is confirmed by its sent mark in the
    # result store, the Started write is coalesced away, and the routine Normal Events
    # (what the status says) are off by default.
    writes = _metric(operator.metrics(), "celery_operator_api_writes_total",
                     'resource="scheduledtasks/status"')
    assert writes == 2, writes
    operator.stop()

    # --task-events=all: the routine Events too, one API write each.
    start_operator("--task-events", "all")
    tasks.create("add-loud", {"task": {"name": "demo.add", "args": [2, 3]}})
    tasks.wait_phase("add-loud", "Succeeded", timeout=30)
    events = wait_for_events(core, namespace, "add-loud",
                             lambda es: "Succeeded" in {r for _, r, _ in es})
    # (No Dispatched: a task that ends before its Queued write has none to announce.)
    assert {r for _, r, _ in events} == {"Succeeded"}
    # By now the first operator's Events, had it posted any, would be there too.
    assert events_for(core, namespace, "add") == []


def test_an_ended_task_is_read_when_its_event_comes_not_at_the_next_sweep(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks,
) -> None:
    """A worker with -E says when a task ended, and the operator reads that task's record
    at once; the sweep over every tracked task (here every 120 s) is only the fallback."""
    start_operator("--poll-interval", "120")
    tasks.create("first", {"task": {"name": "demo.add", "args": [1, 1]}})
    tasks.wait_phase("first", "Succeeded", timeout=20)  # the start's sweep is behind us
    tasks.create("second", {"task": {"name": "demo.add", "args": [2, 3]}})
    obj = tasks.wait_phase("second", "Succeeded", timeout=20)
    assert obj["status"]["result"] == 5


def test_named_queue_reaches_only_the_worker_listening_on_it(
    start_operator: StartOperator, tasks: Tasks, broker_url: str, backend_url: str,
    tmp_path: Path,
) -> None:
    queue = f"only-{tmp_path.name[-8:]}"
    special = CeleryWorker(broker_url, backend_url, queues=(queue,), workdir=tmp_path,
                           concurrency=1).start()
    try:
        start_operator()
        tasks.create("routed", {"task": {"name": "demo.echo_json", "kwargs": {"q": queue},
                                         "queue": queue}})
        obj = tasks.wait_phase("routed", "Succeeded", timeout=30)
        assert obj["status"]["worker"] == special.name
        assert obj["status"]["result"] == {"q": queue}
    finally:
        special.stop()


def test_countdown_counts_from_creation_and_is_not_run_early(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks,
    results: redis_lib.Redis,
) -> None:
    start_operator()
    created = tasks.create("later", {"task": {"name": "demo.add", "args": [1, 1]},
                                     "countdown": 4})
    scheduled = tasks.wait_phase("later", "Scheduled", timeout=10)
    created_at = parse_time(created["metadata"]["creationTimestamp"])
    due = parse_time(scheduled["status"]["dueTime"])
    assert due == created_at + timedelta(seconds=4)
    done = tasks.wait_phase("later", "Succeeded", timeout=30)
    started = float(results.get(STARTED_KEY + done["status"]["taskId"]))
    # The worker starts it at the due time, not before (eta=dueTime rides on the message).
    assert started >= due.timestamp() - 0.05
    assert started - due.timestamp() < 2.0


def test_failure_is_reported_and_retried_by_policy(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks, core,
    namespace: str, results: redis_lib.Redis,
) -> None:
    start_operator()
    tasks.create("flaky", {
        "task": {"name": "demo.fail", "args": ["boom"]},
        "retry": {"limit": 2, "backoff": {"initialSeconds": 1, "factor": 2, "maxSeconds": 2}},
    })
    obj = tasks.wait_phase("flaky", "Failed", timeout=60)
    status = obj["status"]
    assert status["error"]["type"] == "ValueError"
    assert status["error"]["message"] == "boom"
    assert "Traceback" in status["error"].get("traceback", "")
    attempts = status["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert all(a["phase"] == "Failed" for a in attempts)
    ids = [a["taskId"] for a in attempts]
    assert len(set(ids)) == 3  # a new deterministic id per attempt
    assert all(int(results.get(RUNS_KEY + i)) == 1 for i in ids)
    events = wait_for_events(core, namespace, "flaky",
                             lambda es: [r for _, r, _ in es].count("TaskFailed") >= 3)
    warnings = [r for t, r, _ in events if t == "Warning"]
    assert warnings.count("TaskFailed") == 3
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Stalled"]["status"] == "True"
    assert conditions["Ready"]["status"] == "False"


def test_celery_level_retries_are_counted(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks
) -> None:
    start_operator()
    tasks.create("retrying", {"task": {"name": "demo.retry", "kwargs": {"times": 2}}})
    obj = tasks.wait_phase("retrying", "Succeeded", timeout=30)
    assert obj["status"]["result"] == 2
    assert obj["status"]["retries"] == 2


def test_revoke_before_dispatch_never_sends(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks,
    results: redis_lib.Redis,
) -> None:
    start_operator()
    tasks.create("cancel-me", {"task": {"name": "demo.add", "args": [1, 2]}, "countdown": 6})
    scheduled = tasks.wait_phase("cancel-me", "Scheduled", timeout=10)
    tasks.patch_spec("cancel-me", {"revoke": {"terminate": False}})
    obj = tasks.wait_phase("cancel-me", "Revoked", timeout=10)
    due = parse_time(scheduled["status"]["dueTime"])
    time.sleep(max((due - datetime.now(UTC)).total_seconds() + 1, 0))  # past the due time
    obj = tasks.get("cancel-me")
    assert obj["status"]["phase"] == "Revoked"
    assert "taskId" not in obj["status"]
    would_be = task_id_for(obj["metadata"]["uid"], 1)
    assert results.get(RUNS_KEY + would_be) is None  # never ran
    assert results.get(f"celery-task-meta-{would_be}") is None  # never reached a worker


def test_revoke_after_dispatch_terminates_the_running_task(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks,
    results: redis_lib.Redis,
) -> None:
    start_operator()
    tasks.create("long", {"task": {"name": "demo.sleep", "args": [30]}})
    obj = tasks.wait_phase("long", "Started", timeout=20)
    tasks.patch_spec("long", {"revoke": {"terminate": True, "signal": "SIGKILL"}})
    # Revoked only once the worker says so: Celery stores REVOKED for a terminated task.
    obj = tasks.wait_phase("long", "Revoked", timeout=20)
    meta = json.loads(results.get(f"celery-task-meta-{obj['status']['taskId']}"))
    assert meta["status"] == "REVOKED", meta
    assert results.get(RUNS_KEY + obj["status"]["taskId"]) == b"1"  # it had started once


def test_a_revoke_no_worker_heard_is_enforced_when_a_worker_comes(
    start_operator: StartOperator, tasks: Tasks, results: redis_lib.Redis, core,
    namespace: str, broker_url: str, backend_url: str, tmp_path: Path,
) -> None:
    """Celery's revoke is a broadcast: a worker that was not listening never hears it.
    The operator keeps the task Revoking, records the revoke where the worker guard
    looks and broadcasts again when a worker joins; the task body never runs."""
    queue = f"nobody-{tmp_path.name[-8:]}"
    start_operator()
    tasks.create("unheard", {"task": {"name": "demo.add", "args": [1, 2], "queue": queue}})
    task_id = tasks.wait_phase("unheard", "Queued", timeout=20)["status"]["taskId"]
    tasks.patch_spec("unheard", {"revoke": {}})
    obj = tasks.wait_phase("unheard", "Revoking", timeout=10)
    assert "enforced until it takes effect" in obj["status"]["conditions"][0]["message"]
    worker = CeleryWorker(broker_url, backend_url, queues=(queue,), workdir=tmp_path,
                          concurrency=1, extra_env={"DEMO_RUN_ONCE": "1"}).start()
    try:
        obj = tasks.wait_phase("unheard", "Revoked", timeout=30)
        # The guard stores REVOKED before its trace ends; a stop inside that window
        # kills the pool child, and Celery then stores WorkerLostError over REVOKED.
        # (A worker that heard the broadcast first discards it without a pool child.)
        ended = (f"[{task_id}] ignored", f"Discarding revoked task: demo.add[{task_id}]")
        wait_for(lambda: any(e in worker.process.log_tail(400) for e in ended), 20,
                 "the worker ended the delivery")
    finally:
        worker.stop()
    assert results.get(RUNS_KEY + task_id) is None  # the body never ran
    meta = json.loads(results.get(f"celery-task-meta-{task_id}"))
    assert meta["status"] == "REVOKED", meta
    reasons = [r for _, r, _ in wait_for_events(
        core, namespace, "unheard", lambda es: "Revoked" in {r for _, r, _ in es})]
    assert reasons.count("Revoking") == 1 and reasons.count("Revoked") == 1


def test_a_queued_task_nobody_takes_expires_and_is_revoked(
    start_operator: StartOperator, tasks: Tasks, results: redis_lib.Redis,
    broker_url: str, backend_url: str, tmp_path: Path,
) -> None:
    queue = f"late-{tmp_path.name[-8:]}"
    start_operator()
    tasks.create("stale", {"task": {"name": "demo.add", "args": [1, 2], "queue": queue},
                           "expires": 3})
    obj = tasks.wait_phase("stale", "Expired", timeout=35)
    expires_at = parse_time(obj["status"]["expiresAt"])
    assert parse_time(obj["status"]["completionTime"]) >= expires_at
    assert "while waiting in the queue" in obj["status"]["conditions"][0]["message"]
    # A worker that comes later does not run it.
    task_id = obj["status"]["taskId"]
    worker = CeleryWorker(broker_url, backend_url, queues=(queue,), workdir=tmp_path,
                          concurrency=1).start()
    try:
        deadline = time.monotonic() + 20
        while results.get(f"celery-task-meta-{task_id}") is None:
            assert time.monotonic() < deadline, "the worker never took the expired message"
            time.sleep(0.2)
    finally:
        worker.stop()
    assert json.loads(results.get(f"celery-task-meta-{task_id}"))["status"] == "REVOKED"
    assert results.get(RUNS_KEY + task_id) is None
    assert tasks.get("stale")["status"]["phase"] == "Expired"


def test_expired_before_dispatch_is_never_sent(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks, core,
    namespace: str,
) -> None:
    start_operator()
    eta = (datetime.now(UTC) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    tasks.create("stale", {"task": {"name": "demo.add", "args": [1, 2]}, "eta": eta,
                           "expires": 60})
    obj = tasks.wait_phase("stale", "Expired", timeout=15)
    assert "taskId" not in obj["status"]
    events = wait_for_events(core, namespace, "stale",
                             lambda es: ("Warning", "Expired") in [(t, r) for t, r, _ in es])
    assert ("Warning", "Expired") in [(t, r) for t, r, _ in events]


def test_big_and_unencodable_results_and_unknown_tasks_are_reported(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks
) -> None:
    start_operator()
    tasks.create("big", {"task": {"name": "demo.big_result", "args": [10 * 1024 * 1024]}})
    tasks.create("weird", {"task": {"name": "demo.not_json"}})
    tasks.create("nobody", {"task": {"name": "no.such.task"}})
    tasks.create("fine", {"task": {"name": "demo.add", "args": [20, 22]}})
    big = tasks.wait_phase("big", "Succeeded", timeout=60)
    assert big["status"]["resultTruncated"] is True
    assert len(json.dumps(big["status"]["result"])) <= 33 * 1024
    weird = tasks.wait_phase("weird", "Failed", timeout=30)
    assert weird["status"]["error"]["type"]
    nobody = tasks.wait_phase("nobody", "Failed", timeout=30)
    assert nobody["status"]["error"]["type"] == "NotRegistered"
    assert tasks.wait_phase("fine", "Succeeded", timeout=30)["status"]["result"] == 42


def test_ttl_after_finished_deletes_the_object(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks
) -> None:
    start_operator()
    tasks.create("short-lived", {"task": {"name": "demo.add", "args": [1, 1]},
                                 "ttlSecondsAfterFinished": 1})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not any(i["metadata"]["name"] == "short-lived" for i in tasks.list()):
            return
        time.sleep(0.3)
    raise AssertionError("short-lived was not deleted")


def _metric(text: str, name: str, label: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_task_on_a_worker_that_dies_is_judged_lost_and_retried(
    start_operator: StartOperator, tasks: Tasks, broker_url: str, backend_url: str,
    tmp_path: Path, core, namespace: str,
) -> None:
    queue = f"lost-{tmp_path.name[-8:]}"
    doomed = CeleryWorker(broker_url, backend_url, queues=(queue,), workdir=tmp_path,
                          concurrency=1).start()
    start_operator()
    tasks.create("orphan", {
        "task": {"name": "demo.sleep", "args": [3], "queue": queue},
        "retry": {"limit": 1, "on": ["Lost"], "backoff": {"initialSeconds": 1}},
    })
    tasks.wait_phase("orphan", "Started", timeout=20)
    doomed.kill()  # SIGKILL: no worker-offline event, its heartbeats just stop
    rescuer = CeleryWorker(broker_url, backend_url, queues=(queue,), workdir=tmp_path,
                           concurrency=1).start()
    try:
        obj = tasks.wait_phase("orphan", "Succeeded", timeout=60)
        attempts = obj["status"]["attempts"]
        assert [a["phase"] for a in attempts] == ["Failed", "Succeeded"]
        assert attempts[0]["error"]["type"] == "WorkerLost"
        assert attempts[0]["worker"] == doomed.name
        assert obj["status"]["worker"] == rescuer.name
    finally:
        rescuer.stop()


def test_works_without_celery_events_from_polling_the_backend_alone(
    start_operator: StartOperator, tasks: Tasks, broker_url: str, backend_url: str,
    tmp_path: Path,
) -> None:
    queue = f"quiet-{tmp_path.name[-8:]}"
    quiet = CeleryWorker(broker_url, backend_url, queues=(queue,), workdir=tmp_path,
                         events=False).start()
    try:
        start_operator("--no-events")
        tasks.create("polled", {"task": {"name": "demo.retry", "kwargs": {"times": 1},
                                         "queue": queue}})
        obj = tasks.wait_phase("polled", "Succeeded", timeout=30)
        assert obj["status"]["result"] == 1
        assert obj["status"]["worker"] == quiet.name
    finally:
        quiet.stop()


def test_deleting_a_running_task_revokes_it(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks,
    results: redis_lib.Redis,
) -> None:
    start_operator()
    tasks.create("doomed", {"task": {"name": "demo.sleep", "args": [30]}})
    task_id = tasks.wait_phase("doomed", "Started", timeout=20)["status"]["taskId"]
    tasks.delete("doomed")
    deadline = time.monotonic() + 15
    meta = None
    while time.monotonic() < deadline:
        raw = results.get(f"celery-task-meta-{task_id}")
        meta = json.loads(raw) if raw else None
        if meta and meta["status"] in ("REVOKED", "FAILURE"):
            break
        time.sleep(0.2)
    assert meta is not None and meta["status"] in ("REVOKED", "FAILURE"), meta


def test_metrics_count_dispatches_and_outcomes(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks
) -> None:
    operator = start_operator()
    tasks.create("measured", {"task": {"name": "demo.add", "args": [1, 1],
                                       "queue": "high_priority"}})
    tasks.wait_phase("measured", "Succeeded", timeout=30)
    deadline = time.monotonic() + 5  # the counter moves right after the status write
    while time.monotonic() < deadline:
        text = operator.metrics()
        if _metric(text, "celery_operator_finished_total", 'outcome="Succeeded"'):
            break
        time.sleep(0.1)
    assert _metric(text, "celery_operator_dispatched_total", 'queue="high_priority"') == 1
    assert _metric(text, "celery_operator_finished_total",
                   'outcome="Succeeded",queue="high_priority"') == 1
    assert _metric(text, "celery_operator_dispatch_lateness_seconds_count", "") == 1


def test_a_burst_is_claimed_early_yet_starts_on_time_and_is_reported_in_full(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks,
    results: redis_lib.Redis,
) -> None:
    # 30 tasks due at one second with a claim rate of 5/s: claimed ~6 s early, and the
    # operator reads neither events nor results for 6 s from the due time (the burst's
    # quiet window). Every task must still start at its due time, run once, and end with
    # its true start time (from the held-back events) and result in status.
    operator = start_operator("--claim-rate", "5")
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=10)
    names = [f"burst-{i:02d}" for i in range(30)]
    for name in names:
        tasks.create(name, {"task": {"name": "demo.sleep", "args": [0.3]},
                            "eta": due.isoformat().replace("+00:00", "Z")})
    items = tasks.wait_all("Succeeded", len(names), timeout=60)
    assert len(items) == len(names)
    for obj in items:
        status = obj["status"]
        task_id = status["taskId"]
        assert int(results.get(RUNS_KEY + task_id) or 0) == 1, obj["metadata"]["name"]
        started = float(results.get(STARTED_KEY + task_id))
        assert started >= due.timestamp() - 0.05
        assert parse_time(status["queuedTime"]) < due  # published ahead, with eta = due
        # startTime is the worker's (an event hint), not the completion time.
        assert abs(parse_time(status["startTime"]).timestamp() - started) < 0.1
        assert parse_time(status["completionTime"]) >= parse_time(status["startTime"]) + \
            timedelta(seconds=0.25)
        assert status["result"] == 0.3
    assert "quiet (no event hints, no result reads)" in operator.log_tail(2000)
