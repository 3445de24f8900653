"""PeriodicTask against input it must not trust and writes the API server refuses:
look-alike children, deletion of the parent, refused child creates, hostile run requests."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from celery_operator.api import GROUP, SCHEDULED_PLURAL, VERSION, format_time, parse_time
from celery_operator.devstack import CeleryWorker, KubeEnv
from celery_operator.devstack.demo_app import RUNS_KEY
from celery_operator.devstack.operatorproc import OperatorProcess

from .conftest import StartOperator, Tasks, events_for, gone, holds_for, wait_for, wait_for_events

pytestmark = [pytest.mark.integration, pytest.mark.serial]

PARENT_LABEL = "celeryoperator.dev/periodic-task"
SCHEDULED_TIME = "celeryoperator.dev/scheduled-time"
RUN_REQUEST = "celeryoperator.dev/run-requested-at"


def _children(tasks: Tasks, parent: str) -> list[dict[str, Any]]:
    items = [i for i in tasks.list()
             if (i["metadata"].get("labels") or {}).get(PARENT_LABEL) == parent]
    return sorted(items, key=lambda i: i["metadata"]["name"])


def _owned(tasks: Tasks, parent_uid: str) -> list[dict[str, Any]]:
    return [i for i in tasks.list()
            if any(r.get("controller") and r.get("uid") == parent_uid
                   for r in i["metadata"].get("ownerReferences") or ())]





def _metric(operator: OperatorProcess, name: str, labels: str) -> float:
    """One sample of the operator's /metrics (0 when it has none yet)."""
    pattern = re.compile(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", re.M)
    found = pattern.search(operator.metrics())
    return float(found.group(1)) if found else 0.0


def _child_creates(operator: OperatorProcess) -> float:
    return _metric(operator, "celery_operator_api_writes_total",
                   'resource="scheduledtasks",verb="create"')


def _status_writes(operator: OperatorProcess) -> float:
    return _metric(operator, "celery_operator_api_writes_total",
                   'resource="periodictasks/status",verb="patch"')


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def _meta_state(results: redis_lib.Redis, task_id: str) -> str | None:
    raw = results.get(f"celery-task-meta-{task_id}")
    return str(json.loads(raw)["status"]) if raw else None


# ---- a look-alike child -----------------------------------------------------------------------


def test_a_scheduledtask_with_the_parent_label_but_no_owner_is_left_alone(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks, periodic: Tasks,
    results: redis_lib.Redis,
) -> None:
    start_operator()
    # Replace revokes every active run at each fire time; a history of 0 deletes every
    # finished run: a look-alike taken for a run would be revoked, then deleted.
    parent = periodic.create("owner", {
        "schedule": {"interval": "2s"},
        "task": {"name": "demo.add", "args": [1, 1]},
        "concurrencyPolicy": "Replace",
        "successfulRunsHistoryLimit": 0,
        "failedRunsHistoryLimit": 0,
    })
    start = parse_time(parent["metadata"]["creationTimestamp"])
    forged_at = start + timedelta(seconds=1)
    tasks.create(
        "owner-forged", {"task": {"name": "demo.sleep", "args": [5]}},
        labels={PARENT_LABEL: "owner"},
        annotations={SCHEDULED_TIME: format_time(forged_at)},
    )
    # It runs as its own task, through two fire times of the parent, to the end.
    started = tasks.wait_phase("owner-forged", "Started", timeout=20)
    done = tasks.wait_phase("owner-forged", "Succeeded", timeout=20)
    finished = parse_time(done["status"]["completionTime"])
    assert done["status"]["result"] == 5
    assert "revoke" not in done["spec"]
    assert int(results.get(RUNS_KEY + started["status"]["taskId"])) == 1
    # The parent kept pruning its own runs after the look-alike finished: its first run
    # after that was created (counted in lastScheduleTime), ran and was deleted ...
    fire = start + timedelta(seconds=2 * (int((finished - start).total_seconds()) // 2 + 1))
    wait_for(lambda: parse_time(periodic.get("owner")["status"]["lastScheduleTime"]) >= fire, 10,
          f"the run at {format_time(fire)} created")
    wait_for(lambda: gone(tasks, f"owner-{int(fire.timestamp())}"), 15,
          "that run deleted by the history limit")
    # ... and the look-alike is still there, never shown or counted as a run.
    assert tasks.get("owner-forged")["status"]["phase"] == "Succeeded"
    status = periodic.get("owner")["status"]
    shown = [r["name"] for r in [*status.get("active", []), *status.get("recentRuns", [])]]
    assert "owner-forged" not in shown
    last = parse_time(status["lastScheduleTime"])
    assert status["totalRuns"] == int((last - start).total_seconds() // 2)


# ---- deleting a PeriodicTask ------------------------------------------------------------------


def test_deleting_a_periodictask_stops_its_runs_and_collected_runs_are_cancelled(
    start_operator: StartOperator, tasks: Tasks, periodic: Tasks, results: redis_lib.Redis,
    broker_url: str, backend_url: str, tmp_path: Path,
) -> None:
    """Runs carry a controller ownerReference and no finalizer: Kubernetes' garbage
    collector deletes them after their parent, and each is then cancelled as any deleted
    ScheduledTask (one that has not started never runs, a running one is terminated).
    The bare API server has no garbage collector: the test deletes the owned runs as it
    would (background propagation, after the parent is gone)."""
    # A worker of its own, with two slots: what is running is known exactly.
    queue = f"doomed-{tmp_path.name[-8:]}"
    worker = CeleryWorker(broker_url, backend_url, queues=(queue,), workdir=tmp_path,
                          concurrency=2).start()
    try:
        _delete_and_collect(start_operator, tasks, periodic, results, queue)
    finally:
        worker.stop()


def _delete_and_collect(
    start_operator: StartOperator, tasks: Tasks, periodic: Tasks, results: redis_lib.Redis,
    queue: str,
) -> None:
    start_operator()
    parent = periodic.create("doomed", {
        "schedule": {"interval": "3s"},
        "task": {"name": "demo.sleep", "args": [30], "queue": queue},
        "successfulRunsHistoryLimit": 50,
    })
    uid = parent["metadata"]["uid"]
    # Two runs take the worker's two slots; the third waits, dispatched, not started.
    tasks_before: list[dict[str, Any]] = []

    def three_runs() -> bool:
        tasks_before[:] = _children(tasks, "doomed")
        return len(tasks_before) == 3
    wait_for(three_runs, 25, "three runs")
    periodic.delete("doomed")  # right after a run was created: none is being created now
    names = [c["metadata"]["name"] for c in tasks_before]
    holds_for(lambda: [c["metadata"]["name"] for c in _children(tasks, "doomed")] == names,
               7, "no run created after the PeriodicTask was deleted")
    owned = _owned(tasks, uid)
    assert sorted(c["metadata"]["name"] for c in owned) == names
    for child in owned:
        (ref,) = child["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["controller"]) == ("PeriodicTask", "doomed", True)
    running = [c for c in owned if c["status"]["phase"] == "Started"]
    waiting = [c for c in owned if c["status"]["phase"] != "Started"]
    assert (len(running), len(waiting)) == (2, 1), [c["status"]["phase"] for c in owned]
    # What the garbage collector does next:
    for child in owned:
        tasks.delete(child["metadata"]["name"])
    for child in running:
        task_id = child["status"]["taskId"]
        wait_for(lambda tid=task_id: _meta_state(results, tid) == "REVOKED", 20,
              f"running task {task_id} terminated")
    for child in waiting:
        task_id = (child.get("status") or {}).get("taskId")
        if task_id is None:
            continue  # never claimed: nothing was ever sent
        wait_for(lambda tid=task_id: _meta_state(results, tid) == "REVOKED", 20,
              f"waiting task {task_id} discarded")
        assert results.get(RUNS_KEY + task_id) is None  # its body never ran


# ---- a child create the API server refuses ----------------------------------------------------


class Policies:
    """ValidatingAdmissionPolicies bound to one namespace: the API server itself refuses
    what they match (422, its own message); deleted after the test."""

    def __init__(self, kube: KubeEnv, namespace: str) -> None:
        self.api = client.AdmissionregistrationV1Api(kube.api_client())
        self.namespace = namespace
        self.made: list[str] = []

    def install(self, suffix: str, resource: str, operation: str, expression: str,
                message: str) -> None:
        name = f"{suffix}-{self.namespace}"
        self.api.create_validating_admission_policy({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{
                    "apiGroups": [GROUP], "apiVersions": ["*"], "operations": [operation],
                    "resources": [resource],
                }]},
                "validations": [{"expression": expression, "message": message}],
            },
        })
        self.api.create_validating_admission_policy_binding({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": self.namespace}}},
            },
        })
        self.made.append(name)

    def lift(self, suffix: str) -> None:
        self.api.delete_validating_admission_policy_binding(f"{suffix}-{self.namespace}")

    def remove_all(self) -> None:
        for name in self.made:
            for remove in (self.api.delete_validating_admission_policy_binding,
                           self.api.delete_validating_admission_policy):
                try:
                    remove(name)
                except ApiException as exc:
                    if exc.status != 404:
                        raise


@pytest.fixture
def policies(kube: KubeEnv, namespace: str) -> Iterator[Policies]:
    made = Policies(kube, namespace)
    yield made
    made.remove_all()


def _refuse_runs_of(policies: Policies, parent: str) -> str:
    message = f"runs of {parent} are not allowed in this namespace"
    policies.install(
        "refuse-runs", SCHEDULED_PLURAL, "CREATE",
        f"!has(object.metadata.labels) || !('{PARENT_LABEL}' in object.metadata.labels) || "
        f"object.metadata.labels['{PARENT_LABEL}'] != '{parent}'",
        message,
    )
    return message


def _create_refused(custom: client.CustomObjectsApi, namespace: str, parent: str) -> bool:
    """Whether a run of `parent` would be refused now (a dry run: nothing is stored)."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ScheduledTask",
        "metadata": {"name": "probe", "labels": {PARENT_LABEL: parent}},
        "spec": {"task": {"name": "demo.add"}},
    }
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, SCHEDULED_PLURAL,
                                               body, dry_run="All")
    except ApiException as exc:
        if exc.status in (403, 422):
            return True
        raise
    return False


def test_a_refused_run_is_reported_once_and_retried_with_backoff(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks, periodic: Tasks,
    custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
    policies: Policies,
) -> None:
    message = _refuse_runs_of(policies, "refused")
    wait_for(lambda: _create_refused(custom, namespace, "refused"), 15, "the policy in force")
    operator = start_operator()
    periodic.create("refused", {
        "schedule": {"interval": "2s"},
        "task": {"name": "demo.add", "args": [1, 2]},
    })
    wait_for(lambda: _child_creates(operator) >= 1, 10, "the first create")
    first = time.monotonic()
    wait_for(lambda: _condition(periodic.get("refused"), "Ready").get("reason") == "ChildRejected",
          10, "Ready=False, ChildRejected")
    obj = periodic.get("refused")
    ready, stalled = _condition(obj, "Ready"), _condition(obj, "Stalled")
    assert ready["status"] == "False" and message in ready["message"]
    assert (stalled["status"], stalled["reason"]) == ("True", "ChildRejected")
    # Retried after 5, then 10 s more (then 20, ...): three creates in the first 25 s,
    # where a retry every interval (2 s) would make 13 and one per reconcile error 6.
    time.sleep(max(first + 25 - time.monotonic(), 0))
    assert _child_creates(operator) == 3
    status = periodic.get("refused")["status"]
    assert "totalRuns" not in status and "lastScheduleTime" not in status  # nothing ran
    assert _children(tasks, "refused") == []
    warnings = [(t, r, m) for t, r, m in events_for(core, namespace, "refused")
                if r == "ChildRejected"]
    assert len(warnings) == 1 and warnings[0][0] == "Warning" and message in warnings[0][2]
    # Allowed again and the spec changed: tried at once (not after the 20 s backoff).
    policies.lift("refuse-runs")
    wait_for(lambda: not _create_refused(custom, namespace, "refused"), 15, "the policy gone")
    periodic.patch_spec("refused", {"task": {"name": "demo.add", "args": [2, 2]}})
    wait_for(lambda: len(_children(tasks, "refused")) >= 1, 6, "a run right after the change")
    child = _children(tasks, "refused")[0]
    assert child["spec"]["task"]["args"] == [2, 2]
    wait_for(lambda: _condition(periodic.get("refused"), "Ready").get("status") == "True", 10,
          "Ready again")
    assert _condition(periodic.get("refused"), "Stalled")["status"] == "False"
    assert tasks.wait_phase(child["metadata"]["name"], "Succeeded", 20)["status"]["result"] == 4


def _status_refused(custom: client.CustomObjectsApi, namespace: str, name: str) -> bool:
    """Whether a status write recording a run would be refused now (a dry run)."""
    try:
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "periodictasks", name, {"status": {"totalRuns": 1}},
            dry_run="All")
    except ApiException as exc:
        if exc.status in (403, 422):
            return True
        raise
    return False


def test_a_refused_status_write_is_reported_and_its_runs_are_counted_once(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks, periodic: Tasks,
    custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
    policies: Policies, results: redis_lib.Redis,
) -> None:
    """Runs are created, the status writes that record them are refused: each retry finds
    the runs it created (not created again, not taken for overlapping runs), and once the
    writes go through every run is counted exactly once."""
    message = "no runs may be recorded here"
    policies.install(
        "refuse-status", "periodictasks/status", "UPDATE",
        "!has(object.status) || !has(object.status.totalRuns) || object.status.totalRuns == 0",
        message,
    )
    periodic.create("unrecorded", {
        "schedule": {"interval": "2s"},
        "task": {"name": "demo.add", "args": [2, 3]},
        "concurrencyPolicy": "Replace",  # a run taken for another one would be revoked
        "successfulRunsHistoryLimit": 50,
    })
    wait_for(lambda: _status_refused(custom, namespace, "unrecorded"), 15, "the policy in force")
    operator = start_operator()
    wait_for(lambda: _status_writes(operator) >= 1, 10, "the first status write")
    first = time.monotonic()
    wait_for(lambda: _condition(periodic.get("unrecorded"), "Ready").get("reason")
          == "StatusRejected", 10, "Ready=False, StatusRejected")
    ready = _condition(periodic.get("unrecorded"), "Ready")
    assert ready["status"] == "False" and message in ready["message"]
    # 5 s, then 10 s more: three refused writes in 25 s, and one write of the condition.
    time.sleep(max(first + 25 - time.monotonic(), 0))
    assert _status_writes(operator) == 4
    runs = _children(tasks, "unrecorded")
    assert len(runs) == _child_creates(operator)  # each created once, none AlreadyExists
    assert all("revoke" not in c["spec"] for c in runs)
    warnings = [(t, m) for t, r, m in events_for(core, namespace, "unrecorded")
                if r == "StatusRejected"]
    assert len(warnings) == 1 and warnings[0][0] == "Warning" and message in warnings[0][1]
    # Allowed again: the next retry (at most 20 s later) records every run once.
    policies.lift("refuse-status")
    wait_for(lambda: int((periodic.get("unrecorded").get("status") or {}).get("totalRuns") or 0)
          >= len(runs), 30, "the runs recorded")
    status = periodic.get("unrecorded")["status"]
    last = parse_time(status["lastScheduleTime"])
    counted = [c for c in _children(tasks, "unrecorded")
               if parse_time(c["metadata"]["annotations"][SCHEDULED_TIME]) <= last]
    assert status["totalRuns"] == len(counted)
    assert _condition(periodic.get("unrecorded"), "Ready")["status"] == "True"
    for child in runs:
        done = tasks.wait_phase(child["metadata"]["name"], "Succeeded", timeout=20)
        assert int(results.get(RUNS_KEY + done["status"]["taskId"])) == 1


# ---- run requests nobody should write -------------------------------------------------------


def _request(custom: client.CustomObjectsApi, namespace: str, name: str, value: str) -> None:
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "periodictasks", name,
        {"metadata": {"annotations": {RUN_REQUEST: value}}},
    )


def test_a_run_request_longer_than_status_allows_runs_once_and_is_recorded_by_hash(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks, periodic: Tasks,
    custom: client.CustomObjectsApi, namespace: str,
) -> None:
    start_operator()
    periodic.create("asked", {
        "schedule": {"cron": "0 0 1 1 *"},  # once a year: only requested runs happen now
        "task": {"name": "demo.add", "args": [3, 4]},
    })
    now = datetime.now(UTC).replace(microsecond=0)
    value = now.strftime("%Y-%m-%dT%H:%M:%S.") + "0" * 400 + "Z"  # RFC 3339, 421 characters
    _request(custom, namespace, "asked", value)
    wait_for(lambda: len(_children(tasks, "asked")) == 1, 10, "the requested run")
    child = _children(tasks, "asked")[0]
    assert child["metadata"]["name"] == f"asked-manual-{int(now.timestamp())}"
    assert tasks.wait_phase(child["metadata"]["name"], "Succeeded", 20)["status"]["result"] == 7
    token = "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    wait_for(lambda: periodic.get("asked")["status"].get("lastHandledRunRequest") == token, 10,
          "the request recorded by its hash")
    assert _condition(periodic.get("asked"), "Ready")["status"] == "True"
    holds_for(lambda: len(_children(tasks, "asked")) == 1, 3, "handled once")


def test_a_run_request_that_is_no_time_is_one_warning_and_no_write_loop(
    celery_worker: CeleryWorker, start_operator: StartOperator, tasks: Tasks, periodic: Tasks,
    custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
) -> None:
    operator = start_operator()
    periodic.create("noise", {
        "schedule": {"cron": "0 0 1 1 *"},
        "task": {"name": "demo.add", "args": [1, 1]},
    })
    wait_for(lambda: bool(periodic.get("noise").get("status")), 10, "first status")
    value = "soon, \u00e9\u00e9\u00e9 \U0001f600 " * 500
    _request(custom, namespace, "noise", value)
    token = "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    wait_for(lambda: periodic.get("noise")["status"].get("lastHandledRunRequest") == token, 10,
          "the request handled")
    events = wait_for_events(core, namespace, "noise",
                             lambda es: "InvalidRunRequest" in [r for _, r, _ in es])
    writes = _status_writes(operator)
    holds_for(lambda: _status_writes(operator) == writes, 5, "no status write after it")
    events = [e for e in events_for(core, namespace, "noise") if e[1] == "InvalidRunRequest"]
    assert len(events) == 1 and events[0][0] == "Warning"
    assert "must be an RFC 3339 time" in events[0][2] and len(events[0][2]) < 300
    assert _children(tasks, "noise") == []
    assert _condition(periodic.get("noise"), "Ready")["status"] == "True"


# ---- a run that would not fit a ScheduledTask ---------------------------------------------------


def test_thirty_two_headers_are_refused_at_apply_or_reported_without_a_create(
    start_operator: StartOperator, tasks: Tasks, periodic: Tasks, core: client.CoreV1Api,
    namespace: str,
) -> None:
    """Every run gets `periodic_task_name` on top of the parent's headers, and a
    ScheduledTask takes 32: a parent with 32 would make runs the API server refuses."""
    operator = start_operator()
    headers = {f"h{i}": "v" for i in range(32)}
    try:
        periodic.create("crowded", {
            "schedule": {"interval": "2s"},
            "task": {"name": "demo.add", "args": [1, 1], "headers": headers},
        })
    except ApiException as exc:  # the schema refuses it: the field is named
        assert exc.status == 422 and "spec.task.headers" in str(exc.body)
        return
    wait_for(lambda: _condition(periodic.get("crowded"), "Ready").get("reason") == "InvalidSpec",
          10, "Ready=False, InvalidSpec")
    ready = _condition(periodic.get("crowded"), "Ready")
    assert ready["status"] == "False"
    assert "spec.task.headers: at most 31 headers" in ready["message"]
    events = wait_for_events(core, namespace, "crowded",
                             lambda es: "InvalidSpec" in [r for _, r, _ in es])
    assert [t for t, r, _ in events if r == "InvalidSpec"] == ["Warning"]
    holds_for(lambda: _child_creates(operator) == 0, 6, "no create sent to be refused")
    assert _children(tasks, "crowded") == []
