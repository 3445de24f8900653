"""An app's status from what a probe found: plain values, a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from celery_operator.api.apps import parse_celery_app_spec
from celery_operator.controllers.appresolve import AppProblem, AppState
from celery_operator.controllers.apps import AppView
from celery_operator.controllers.appstatus import (
    Probe,
    desired_status,
    probe_queues,
    ready_changed,
    status_patch,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SPEC = {
    "broker": {"secretKeyRef": {"name": "s", "key": "broker"}},
    "resultBackend": {"secretKeyRef": {"name": "s", "key": "backend"}},
    "defaults": {"queue": "reports"},
    "policy": {"allowedQueues": ["reports", "reports-*", "bulk"]},
}


def view(status: dict[str, Any] | None = None, problem: AppProblem | None = None) -> AppView:
    body = {"metadata": {"name": "a", "namespace": "ns", "generation": 3, "uid": "u"},
            "spec": SPEC, "status": status or {}}
    state = AppState(kind="CeleryApp", namespace="ns", name="a", resolved=None, problem=problem)
    return AppView(key="CeleryApp/ns/a", kind="CeleryApp", namespace="ns", name="a",
                   body=body, spec=parse_celery_app_spec(SPEC, cluster=False), state=state)


def test_the_queues_probed_are_the_default_and_the_allowed_ones_without_globs() -> None:
    assert probe_queues(view().spec) == ["bulk", "reports"]
    assert probe_queues(None) == []


def test_a_healthy_app_shows_its_workers_queues_and_task_counts() -> None:
    found = Probe(error=None, workers=(("w1@h", ("bulk", "reports")),),
                  queues=(("bulk", 0), ("reports", 4)))
    status = desired_status(view(), found, {"Queued": 2, "Succeeded": 5, "Failed": 0}, NOW)
    assert status == {
        "conditions": [{"type": "Ready", "status": "True", "observedGeneration": 3,
                        "lastTransitionTime": "2026-12-01T12:00:00Z", "reason": "Reachable",
                        "message": "broker and result backend answer"}],
        "workers": [{"hostname": "w1@h", "queues": ["bulk", "reports"]}],
        "workerCount": 1,
        "queues": [{"name": "bulk", "depth": 0}, {"name": "reports", "depth": 4}],
        "tasks": {"Queued": 2, "Succeeded": 5},
        "observedGeneration": 3,
    }
    # Written once, the same probe a minute later changes nothing: no write.
    later = desired_status(view(status), found, {"Queued": 2, "Succeeded": 5},
                           NOW.replace(minute=1))
    assert status_patch(status, later) is None
    assert ready_changed({}, status) == ("Normal", "AppReady", "broker and result backend answer")
    assert ready_changed(status, later) is None


def test_an_unreachable_broker_is_ready_false_with_the_error_kept_as_last_error() -> None:
    healthy = desired_status(view(), Probe(error=None), {"Queued": 1}, NOW)
    down = Probe(error="broker unreachable: ConnectionError: Connection refused",
                 reason="BrokerUnreachable")
    status = desired_status(view(healthy), down, {}, NOW.replace(minute=5))
    ready = status["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "BrokerUnreachable")
    assert ready["lastTransitionTime"] == "2026-12-01T12:05:00Z"
    assert status["lastError"] == down.error
    patch = status_patch(healthy, status)
    assert patch is not None and patch["tasks"] == {"Queued": None}  # merge patch: removed
    assert ready_changed(healthy, status) == ("Warning", "AppNotReady", down.error)
    back = desired_status(view(status), Probe(error=None), {}, NOW.replace(minute=6))
    assert back["lastError"] == down.error  # the last error stays for the record
    assert back["conditions"][0]["status"] == "True"


def test_an_app_that_cannot_be_used_says_why_naming_its_field() -> None:
    problem = AppProblem("SecretKeyMissing",
                         'spec.broker.secretKeyRef.key: Secret "s" in namespace "ns" has no key '
                         '"broker" (or its value is not UTF-8 text)')
    status = desired_status(view(problem=problem), None, {}, NOW)
    ready = status["conditions"][0]
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False", "SecretKeyMissing", problem.message)
    assert status["workers"] == [] and status["workerCount"] == 0 and status["queues"] == []
    assert ready_changed({}, status) == ("Warning", "AppNotReady", problem.message)


def test_passwords_in_problem_messages_are_redacted() -> None:
    problem = AppProblem("AppNotReady",
                         "spec.broker.secretKeyRef: redis://:p%40ss%3Aw%2Frd@h:6379/0 failed")
    status = desired_status(view(problem=problem), None, {}, NOW)
    text = repr(status)
    assert "p%40ss" not in text and "redis://:***@h:6379/0" in text
