"""The task state machine under hostile or broken input: durable revoke, a forged task id,
an expired queued message, an undecodable backend record, publish failures."""

from __future__ import annotations

from datetime import timedelta

from celery_operator.api import get_condition
from celery_operator.scheduling.backoff import Backoff
from celery_operator.scheduling.task_lifecycle import (
    PublishFailure,
    current_task_id,
    task_id_for,
)

from .test_task_lifecycle import (
    CFG,
    T0,
    UID,
    Task,
    conditions,
    dispatch,
    iso,
    new,
    reasons,
    s,
)

# ---- durable revoke ----------------------------------------------------------------------


def test_a_revoke_is_broadcast_again_more_and_more_rarely_until_it_takes_effect() -> None:
    task = new()
    dispatch(task, T0)
    task.edit(revoke={})
    first = task.step(T0 + s(10))
    assert task.phase == "Revoking" and first.revoke is not None
    sent_at, sends = T0 + s(10), 1
    gaps = []
    now = sent_at
    for _ in range(8):
        step = task.plan(now, revoke_sent_at=sent_at, revoke_sends=sends)
        assert step.status is None and step.track
        assert step.wake_at is not None and step.wake_at > now  # always a bounded wake-up
        if step.revoke is not None:
            gaps.append((now - sent_at).total_seconds())
            sent_at, sends = now, sends + 1
        now = step.wake_at
    assert gaps == [5, 10, 20, 40, 80, 160, 300, 300][: len(gaps)]
    assert len(gaps) >= 5


def test_a_restarted_operator_broadcasts_a_pending_revoke_once_more() -> None:
    task = new()
    dispatch(task, T0)
    task.edit(revoke={})
    task.step(T0 + s(10))
    step = task.plan(T0 + s(11))  # this process never sent it (revoke_sent_at unknown)
    assert step.revoke is not None and step.status is None


def test_revoking_ends_revoked_when_the_message_expired_unstarted() -> None:
    task = new(expires=60)
    dispatch(task, T0)
    task.edit(revoke={})
    task.step(T0 + s(10))
    step = task.step(T0 + s(61), revoke_sent_at=T0 + s(10), revoke_sends=1)
    assert task.phase == "Revoked"
    assert "expired before any worker started it" in task.status["conditions"][0]["message"]
    assert step.finished_outcome == "Revoked" and step.revoke is None


def test_revoking_ends_revoked_when_the_broker_lost_the_message() -> None:
    task = new()
    dispatch(task, T0, run_id="run-1")
    task.edit(revoke={})
    task.step(T0 + s(10), broker_run_id="run-1")
    step = task.step(T0 + s(20), broker_run_id="run-2")
    assert task.phase == "Revoked"
    assert step.publish is None  # a revoked task is never republished


def test_a_started_task_that_was_not_terminated_ends_with_its_real_outcome() -> None:
    task = new()
    dispatch(task, T0)
    started = {"backend": task.backend("STARTED", worker="w1"), "started_hint": T0 + s(1)}
    task.step(T0 + s(5), **started)
    task.edit(revoke={"terminate": False})
    task.step(T0 + s(10), **started)
    assert task.phase == "Revoking"
    # A started, unterminated task cannot be called revoked by expiry: it still runs.
    step = task.plan(T0 + s(7200), revoke_sent_at=T0 + s(10), revoke_sends=1, **started)
    assert step.status is None
    task.step(T0 + s(30), backend=task.backend("SUCCESS", result=3, date_done=T0 + s(29)))
    assert task.phase == "Succeeded" and task.status["result"] == 3


def test_deleting_the_spec_revoke_does_not_resurrect_a_revoking_task() -> None:
    task = new()
    dispatch(task, T0)
    task.edit(revoke={})
    task.step(T0 + s(10))
    task.edit(revoke=None)
    step = task.plan(T0 + s(12))
    assert step.publish is None
    task.step(T0 + s(13), backend=task.backend("REVOKED", date_done=T0 + s(12)))
    assert task.phase == "Revoked"


# ---- trust only what we wrote ------------------------------------------------------------


def test_a_forged_task_id_is_never_acted_on_and_is_written_back() -> None:
    task = new()
    dispatch(task, T0)
    victim = "0b7c3c3a-0000-4000-8000-00000000dead"  # another team's Celery task id
    task.status["taskId"] = victim
    task.edit(revoke={"terminate": True})
    assert current_task_id(UID, task.status) == task_id_for(UID, 1)
    step = task.step(T0 + s(5))
    assert step.status == {"taskId": task_id_for(UID, 1)}
    assert step.revoke is None  # nothing acted on until the id is ours again
    assert reasons(step) == [("Warning", "StatusCorrected")]
    step = task.step(T0 + s(6))
    assert task.phase == "Revoking" and step.revoke is not None  # revokes our own id only


def test_a_forged_attempt_still_yields_an_id_of_this_object() -> None:
    status = {"taskId": "x", "attempt": "1; DROP"}
    assert current_task_id(UID, status) == task_id_for(UID, 1)
    assert current_task_id(UID, {"taskId": "x", "attempt": 7}) == task_id_for(UID, 7)
    assert current_task_id(UID, {}) is None


# ---- expiry of a queued message ----------------------------------------------------------


def test_a_queued_task_that_nobody_started_expires_and_is_revoked() -> None:
    task = new(expires=60)
    publish = dispatch(task, T0)
    step = task.plan(T0 + s(1))
    assert step.wake_at == T0 + s(60)  # the planner wakes at the expiry by itself
    step = task.step(T0 + s(60))
    assert task.phase == "Expired"
    assert step.revoke is not None and step.revoke.terminate is False
    assert reasons(step) == [("Warning", "Expired")]
    assert conditions(task) == {"Ready": "False", "Stalled": "True"}
    assert task.status["attempts"][-1] == {
        "attempt": 1, "taskId": publish.task_id, "phase": "Expired",
        "queuedTime": iso(T0), "completionTime": iso(T0 + s(60)),
    }


def test_a_started_task_is_not_expired_by_the_clock() -> None:
    task = new(expires=60)
    dispatch(task, T0)
    started = {"backend": task.backend("STARTED", worker="w1"), "started_hint": T0 + s(59)}
    task.step(T0 + s(61), **started)
    assert task.phase == "Started"


# ---- an undecodable backend record -------------------------------------------------------


def test_an_unreadable_record_is_reported_once_and_tracking_goes_on() -> None:
    task = new()
    dispatch(task, T0)
    bad = task.backend("UNREADABLE", result="not JSON (pickle?)")
    step = task.step(T0 + s(2), backend=bad)
    assert task.phase == "Queued"
    assert reasons(step) == [("Warning", "UnreadableResult")]
    ready = get_condition(task.status["conditions"], "Ready")
    assert ready is not None and ready["status"] == "False"
    assert "pickle" in ready["message"]
    task.assert_quiet(T0 + s(3), backend=bad)
    # Once the record is readable the task moves on.
    task.step(T0 + s(4), backend=task.backend("SUCCESS", result=1, date_done=T0 + s(4)))
    assert task.phase == "Succeeded"
    assert conditions(task) == {"Ready": "True", "Stalled": "False"}


# ---- publish failures --------------------------------------------------------------------


def claimed() -> tuple[Task, str]:
    task = new()
    step = task.step(T0, broker_run_id="run-1")
    assert step.publish is not None
    return task, step.publish.task_id


def test_a_permanent_publish_failure_ends_the_task() -> None:
    task, task_id = claimed()
    failure = PublishFailure(task_id, True, "EncodeError", "the message cannot be encoded",
                             retry_at=T0)
    step = task.step(T0 + s(1), publish_failure=failure)
    assert task.phase == "Failed"
    assert task.status["error"] == {
        "type": "EncodeError", "message": "the message cannot be encoded"}
    assert reasons(step) == [("Warning", "DispatchFailed")]
    assert step.publish is None and step.finished_outcome == "Failed"


def test_a_transient_publish_failure_is_retried_with_backoff_and_reported_once() -> None:
    task, task_id = claimed()
    backoff = Backoff(initial=1, maximum=300)
    now = T0
    publishes, warnings = 0, 0
    for _ in range(12):
        delay = backoff.failed(task_id)
        failure = PublishFailure(task_id, False, "BrokerUnavailable",
                                 "the broker cannot be reached", retry_at=now + delay)
        # Planned often (watch echoes, wake-ups) while it waits: writes once, then nothing.
        for at in (now, now + delay / 2):
            step = task.step(at, publish_failure=failure)
            assert step.publish is None and step.wake_at == now + delay
            warnings += len(step.notices)
        now = now + delay
        step = task.step(now, publish_failure=failure)
        assert step.publish is not None and step.publish.task_id == task_id
        publishes += 1
        assert task.phase == "Dispatching"
    assert warnings == 1  # one Warning for one distinct message
    assert publishes == 12
    # 1 + 2 + 4 + ... capped at 300 s: 12 tries take more than half an hour, not 12 s.
    assert now - T0 == timedelta(seconds=1 + 2 + 4 + 8 + 16 + 32 + 64 + 128 + 256 + 300 * 3)
    ready = get_condition(task.status["conditions"], "Ready")
    assert ready is not None and ready["reason"] == "DispatchFailed"
    # It succeeds at last: confirmed as usual, Ready again.
    task.step(now, broker_run_id="run-1", published_here=task_id)
    assert task.phase == "Queued"
    assert conditions(task) == {"Ready": "True", "Stalled": "False"}


def test_backoff_forgets_a_key_that_succeeded() -> None:
    backoff = Backoff(initial=2, factor=3, maximum=50)
    assert [backoff.failed("a").total_seconds() for _ in range(5)] == [2, 6, 18, 50, 50]
    assert backoff.failures("a") == 5
    backoff.succeeded("a")
    assert backoff.failures("a") == 0
    assert backoff.failed("a") == timedelta(seconds=2)
    assert CFG.claim_lease > timedelta(0)
