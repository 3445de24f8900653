"""The planner's rules for a task in trouble: its app will not take it, its status was
forged, a revoke to enforce, an undecodable backend record, an expired queued message,
a failed publish. Pure, like the rest of the planner (scheduling.task_lifecycle)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from celery_operator.api import (
    Phase,
    RevokeRequest,
    format_time,
    get_condition,
)
from celery_operator.api.celery_state import TaskState
from celery_operator.api.status import (
    attempt_error,
    task_error,
)
from celery_operator.scheduling.revoke import cannot_run_any_more, next_broadcast
from celery_operator.scheduling.task_model import (
    MESSAGE_LIMIT,
    LifecycleConfig,
    Notice,
    Observed,
    PublishFailure,
    StatusPatch,
    Step,
    attempt_record,
    precise,
    republish_order,
    time_of,
)


def held_by_app(
    obs: Observed,
    base: dict[str, Any],
    phase: Phase | None,
    generation_changed: bool,
    claim_at: datetime,
) -> Step:
    """Its app cannot take the task (missing, not allowed here, its policy refuses it):
    Scheduled but Stalled, said once; never claimed or sent while it lasts. The controller
    plans again when the app changes (and, past the claim time, with backoff)."""
    assert obs.app_problem is not None
    reason, message = obs.app_problem
    wake = claim_at if obs.now < claim_at else None
    stalled = get_condition(obs.status.get("conditions"), "Stalled") or {}
    said = (
        phase is Phase.SCHEDULED
        and not generation_changed
        and stalled.get("status") == "True"
        and (stalled.get("reason"), stalled.get("message")) == (reason, message)
        and obs.status.get("dueTime") == base["dueTime"]
        and obs.status.get("expiresAt") == base["expiresAt"]
    )
    if said:
        return Step(wake_at=wake)
    patch = StatusPatch(obs).set(**base).done(Phase.SCHEDULED, reason, message, ready=False,
                                         stalled=True)
    return Step(status=patch, notices=(Notice("Warning", reason, message),), wake_at=wake)


def corrected_task_id(obs: Observed, task_id: str) -> Step:
    """status.taskId was written by someone else: put back the id the operator acts on."""
    message = (
        f"status.taskId was changed to {str(obs.status.get('taskId'))[:80]!r} by someone "
        f"other than the operator; it is {task_id} (derived from the object's uid and "
        "attempt) and was written back"
    )
    return Step(
        status={"taskId": task_id},
        notices=(Notice("Warning", "StatusCorrected", message),),
        track=True,
    )


def revoking(
    obs: Observed,
    revoke: RevokeRequest,
    task_id: str,
    attempt: int,
    started: bool,
    phase: Phase | None,
) -> Step:
    """Enforce a revoke of a dispatched task until it cannot fail (see scheduling.revoke)."""
    status = obs.status
    recorded_run_id = status.get("brokerRunId")
    why = cannot_run_any_more(
        started=started,
        expires_at=time_of(status, "expiresAt"),
        now=obs.now,
        broker_lost_it=bool(
            obs.broker_run_id and recorded_run_id and recorded_run_id != obs.broker_run_id
        ),
    )
    if why is not None:
        message = f"task {task_id} revoked: {why}"
        now = precise(obs.now)
        patch = StatusPatch(obs).set(
            completionTime=now,
            attempts=attempt_record(obs, attempt, Phase.REVOKED, completionTime=now),
        )
        return Step(
            status=patch.done(Phase.REVOKED, "Revoked", message),
            notices=(Notice("Normal", "Revoked", message),),
            finished_outcome=Phase.REVOKED.value,
        )
    due = next_broadcast(obs.revoke_sent_at, obs.revoke_sends, obs.now)
    send = due <= obs.now
    wake = next_broadcast(obs.now, obs.revoke_sends + 1, obs.now) if send else due
    if phase is Phase.REVOKING:
        return Step(revoke=revoke if send else None, wake_at=wake, track=True)
    message = (
        f"revoke sent to the workers for task {task_id} "
        f"(terminate={str(revoke.terminate).lower()}, signal={revoke.signal}); "
        "enforced until it takes effect"
    )
    return Step(
        status=StatusPatch(obs).done(Phase.REVOKING, "Revoking", message),
        revoke=revoke,
        notices=(Notice("Normal", "Revoking", message),),
        wake_at=wake,
        track=True,
    )


def unreadable_record(obs: Observed, backend: TaskState, task_id: str, phase: Phase | None) -> Step:
    """The backend's record cannot be decoded: report it once, keep the phase, keep
    reading (it may be rewritten); other tasks are not held up by it."""
    ready = get_condition(obs.status.get("conditions"), "Ready") or {}
    if ready.get("reason") == "UnreadableResult" or phase is None:
        return Step(track=True)
    message = (
        f"the result backend's record of task {task_id} cannot be decoded "
        f"({str(backend.result)[:200]}): its outcome is unknown until it can be read "
        "(do the workers use result_serializer='json'?)"
    )
    return Step(
        status=StatusPatch(obs).done(phase, "UnreadableResult", message, ready=False),
        notices=(Notice("Warning", "UnreadableResult", message),),
        track=True,
    )


def expired_in_queue(obs: Observed, task_id: str, attempt: int, expires_at: datetime) -> Step:
    """Sent, but no worker started it before it expired: it will never run (workers
    refuse expired messages); revoke it too, so none even tries."""
    now = precise(obs.now)
    message = (
        f"task {task_id} expired at {format_time(expires_at)} while waiting in the queue: "
        "no worker started it in time"
    )
    patch = StatusPatch(obs).set(
        completionTime=now,
        attempts=attempt_record(obs, attempt, Phase.EXPIRED, completionTime=now),
    )
    return Step(
        status=patch.done(Phase.EXPIRED, "Expired", message),
        revoke=RevokeRequest(terminate=False),
        notices=(Notice("Warning", "Expired", message),),
        finished_outcome=Phase.EXPIRED.value,
    )


def publish_failed(
    obs: Observed, cfg: LifecycleConfig, failure: PublishFailure, task_id: str, attempt: int
) -> Step:
    """This process claimed the task and could not publish it. A permanent failure ends
    the task (Failed, DispatchFailed); a transient one is retried with capped backoff,
    reported once per distinct message (condition Ready=False and a Warning)."""
    if failure.permanent:
        message = f"could not publish task {task_id}: {failure.message}"[:MESSAGE_LIMIT]
        now = precise(obs.now)
        patch = StatusPatch(obs).set(
            completionTime=now,
            error=dict(task_error(failure.reason, failure.message)),
            attempts=attempt_record(
                obs, attempt, Phase.FAILED, completionTime=now,
                error=attempt_error(failure.reason, failure.message),
            ),
        )
        return Step(
            status=patch.done(Phase.FAILED, "DispatchFailed", message),
            notices=(Notice("Warning", "DispatchFailed", message),),
            finished_outcome=Phase.FAILED.value,
        )
    message = (
        f"could not publish task {task_id}: {failure.message}; retrying with backoff"
    )[:MESSAGE_LIMIT]
    if obs.now < failure.retry_at:
        ready = get_condition(obs.status.get("conditions"), "Ready") or {}
        if ready.get("reason") == "DispatchFailed" and ready.get("message") == message:
            return Step(wake_at=failure.retry_at, track=True)
        return Step(
            status=StatusPatch(obs).done(Phase.DISPATCHING, "DispatchFailed", message, ready=False),
            notices=(Notice("Warning", "DispatchFailed", message),),
            wake_at=failure.retry_at,
            track=True,
        )
    # Try again: claim again first (conditional, renews the lease), then publish.
    patch = StatusPatch(obs).set(claim={"holder": cfg.holder, "time": precise(obs.now)})
    return Step(
        status=patch.done(Phase.DISPATCHING, "DispatchFailed", message, ready=False),
        publish=republish_order(obs, task_id, attempt),
        wake_at=obs.now + cfg.claim_lease,
    )

