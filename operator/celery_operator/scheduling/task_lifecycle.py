"""The ScheduledTask state machine: given what is observed now, the next step.

Pure: the controller gathers the object, the backend's record of its task id and the
time, calls `plan_step`, and carries the step out (a conditional status write, then a
publish, a revoke, a delete or an Event). Every rule about phases lives here, so it
is tested with plain values and a fake clock.

The dispatch protocol (DESIGN.md, "Claim → publish → confirm"):
  1. claim: phase Dispatching with a deterministic task id, written with a
     resourceVersion precondition — of two operators only one write succeeds;
  2. publish the message (only the process whose claim succeeded);
  3. confirm: a sent mark in the result store (written by the publisher), and phase
     Queued — at once without a mark, else only if the task still waits `queued_after`
     past its due time (one that ends first is written once, from Dispatching).
A claim older than `claim_lease` with nobody confirming is taken over: confirmed when its
sent mark is found, else the *same* task id is published again (at-least-once; the
worker-side guard makes it exactly-once).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from celery_operator.api import (
    FINISHED_PHASES,
    SCHEDULED_PLURAL,
    InvalidSpec,
    Phase,
    RevokeRequest,
    ScheduledTaskSpec,
    format_time,
    parse_time,
)
from celery_operator.api import celery_state as cs
from celery_operator.api.celery_state import TaskState
from celery_operator.api.limits import fit_status
from celery_operator.api.status import (
    attempt_error,
    capped_result,
    task_error,
    truncate,
)
from celery_operator.scheduling.duetime import resolve_due_time, resolve_expiry, retry_delay
from celery_operator.scheduling.task_model import (
    EVENT_MESSAGE_LIMIT,
    IN_FLIGHT,
    MESSAGE_LIMIT,
    RESULT_LIMIT,
    TASK_ID_NAMESPACE,
    LifecycleConfig,
    Notice,
    Observed,
    Publish,
    PublishFailure,
    StatusPatch,
    Step,
    attempt_record,
    conditions_for,
    current_attempt,
    current_task_id,
    fmt_precise,
    future_or_none,
    precise,
    queued_time,
    republish_order,
    task_id_for,
    time_of,
)
from celery_operator.scheduling.task_troubles import (
    corrected_task_id,
    expired_in_queue,
    held_by_app,
    publish_failed,
    revoking,
    unreadable_record,
)

__all__ = [
    "IN_FLIGHT",
    "RESULT_LIMIT",
    "TASK_ID_NAMESPACE",
    "LifecycleConfig",
    "Notice",
    "Observed",
    "Publish",
    "PublishFailure",
    "Step",
    "conditions_for",
    "current_attempt",
    "current_task_id",
    "plan_step",
    "task_id_for",
]


def plan_step(obs: Observed, cfg: LifecycleConfig) -> Step:
    """The next step for one ScheduledTask, its status patch within the CRD's limits
    (worker names and errors are tenant data of any length) and its Events' messages
    within an Event's."""
    step = _plan_step(obs, cfg)
    if step.status is None and not step.notices:
        return step
    return replace(
        step,
        status=fit_status(SCHEDULED_PLURAL, step.status) if step.status is not None else None,
        notices=tuple(
            replace(n, message=truncate(n.message, EVENT_MESSAGE_LIMIT)) for n in step.notices
        ),
    )


def _plan_step(obs: Observed, cfg: LifecycleConfig) -> Step:
    status = obs.status
    phase = Phase(status["phase"]) if status.get("phase") else None
    generation_changed = status.get("observedGeneration") != obs.generation

    if phase in FINISHED_PHASES and phase is not Phase.INVALID:
        return _finished(obs, phase, generation_changed)
    if isinstance(obs.spec, InvalidSpec):
        if phase in IN_FLIGHT or (phase is Phase.RETRYING and status.get("taskId")):
            return _in_flight(obs, None, cfg, phase)  # keep tracking what already runs
        return _invalid(obs, obs.spec, phase, generation_changed)
    spec = obs.spec
    if phase is Phase.INVALID and not generation_changed:
        return Step()

    waiting_retry = phase is Phase.RETRYING and bool(status.get("nextAttemptTime"))
    if phase in (None, Phase.SCHEDULED, Phase.INVALID) or waiting_retry:
        return _before_dispatch(obs, spec, cfg, phase, generation_changed, waiting_retry)
    return _in_flight(obs, spec, cfg, phase)


def _finished(obs: Observed, phase: Phase | None, generation_changed: bool) -> Step:
    spec = obs.spec
    ttl = spec.ttl_seconds_after_finished if isinstance(spec, ScheduledTaskSpec) else None
    patch = None
    if generation_changed:
        # Only the generation moves: the spec of a finished task changes nothing else.
        patch = {"observedGeneration": obs.generation}
    if ttl is None:
        return Step(status=patch)
    finished_at = time_of(obs.status, "completionTime") or obs.now
    delete_at = finished_at + timedelta(seconds=ttl)
    if obs.now >= delete_at:
        return Step(status=patch, delete=True)
    return Step(status=patch, wake_at=delete_at)


def _invalid(
    obs: Observed, error: InvalidSpec, phase: Phase | None, generation_changed: bool
) -> Step:
    if phase is Phase.INVALID and not generation_changed:
        return Step()
    message = f"invalid spec: {error}"[:MESSAGE_LIMIT]
    patch = StatusPatch(obs).done(Phase.INVALID, "InvalidSpec", message)
    return Step(status=patch, notices=(Notice("Warning", "InvalidSpec", message),))


def _before_dispatch(
    obs: Observed,
    spec: ScheduledTaskSpec,
    cfg: LifecycleConfig,
    phase: Phase | None,
    generation_changed: bool,
    waiting_retry: bool,
) -> Step:
    status = obs.status
    due = time_of(status, "dueTime")
    if due is None or (generation_changed and not waiting_retry):
        due = resolve_due_time(eta=spec.eta, countdown=spec.countdown, created=obs.created)
    expires_at = resolve_expiry(
        expires_seconds=spec.expires_seconds, expires_at=spec.expires_at, due=due
    )
    attempt = int(status.get("attempt") or 0) + 1 if waiting_retry else 1
    fire_at = (time_of(status, "nextAttemptTime") or due) if waiting_retry else due
    base = {"dueTime": precise(due), "expiresAt": fmt_precise(expires_at)}

    if spec.revoke is not None:
        patch = StatusPatch(obs).set(**base, completionTime=precise(obs.now), nextAttemptTime=None)
        message = "revoked before dispatch: the message was never sent"
        return Step(
            status=patch.done(Phase.REVOKED, "RevokedBeforeDispatch", message),
            notices=(Notice("Normal", "Revoked", message),),
            finished_outcome=Phase.REVOKED.value,
        )
    if expires_at is not None and obs.now >= expires_at:
        patch = StatusPatch(obs).set(**base, completionTime=precise(obs.now), nextAttemptTime=None)
        message = f"not sent: it expired at {format_time(expires_at)} before it could be sent"
        return Step(
            status=patch.done(Phase.EXPIRED, "Expired", message),
            notices=(Notice("Warning", "Expired", message),),
            finished_outcome=Phase.EXPIRED.value,
        )
    lead = cfg.dispatch_lead + obs.extra_lead
    if obs.app_problem is not None and not waiting_retry:
        return held_by_app(obs, base, phase, generation_changed, fire_at - lead)
    if obs.now >= fire_at - lead:
        return _claim(obs, cfg, base, attempt, eta=fire_at, expires=expires_at)

    wake = fire_at - lead
    unchanged = (
        phase is not None
        and not generation_changed
        and status.get("dueTime") == base["dueTime"]
        and status.get("expiresAt") == base["expiresAt"]
    )
    if unchanged:
        return Step(wake_at=wake)
    if waiting_retry:
        retry_patch = StatusPatch(obs).set(**base)
        return Step(
            status=retry_patch.done(Phase.RETRYING, "WaitingToRetry", _retry_msg(fire_at)),
            wake_at=wake,
        )
    message = f"due at {base['dueTime']}"
    scheduled = StatusPatch(obs).set(**base).done(Phase.SCHEDULED, "Scheduled", message)
    notices = () if phase is Phase.SCHEDULED else (Notice("Normal", "Scheduled", message),)
    return Step(status=scheduled, wake_at=wake, notices=notices)


def _retry_msg(at: datetime) -> str:
    return f"next attempt at {format_time(at)}"


def _claim(
    obs: Observed,
    cfg: LifecycleConfig,
    base: dict[str, Any],
    attempt: int,
    *,
    eta: datetime,
    expires: datetime | None,
) -> Step:
    task_id = task_id_for(obs.uid, attempt)
    patch = StatusPatch(obs).set(
        **base,
        taskId=task_id,
        attempt=attempt,
        claim={"holder": cfg.holder, "time": precise(obs.now)},
        nextAttemptTime=None,
        queuedTime=None,
        startTime=None,
        completionTime=None,
        worker=None,
        result=None,
        resultTruncated=None,
        error=None if attempt == 1 else obs.status.get("error"),
        retries=None,
    )
    message = f"claimed attempt {attempt} as task {task_id}"
    return Step(
        status=patch.done(Phase.DISPATCHING, "Dispatching", message),
        publish=Publish(task_id=task_id, attempt=attempt, eta=eta, expires=expires),
        wake_at=obs.now + cfg.claim_lease,
    )


def _in_flight(
    obs: Observed, spec: ScheduledTaskSpec | None, cfg: LifecycleConfig, phase: Phase | None
) -> Step:
    status = obs.status
    attempt = current_attempt(status)
    task_id = task_id_for(obs.uid, attempt)
    if status.get("taskId") != task_id:
        return corrected_task_id(obs, task_id)
    backend = obs.backend if obs.backend is not None and obs.backend.task_id == task_id else None
    state = backend.status if backend is not None else cs.PENDING
    started = state in (cs.STARTED, cs.RETRY) or obs.started_hint is not None
    # Before saying a task never ran (expired unstarted, revoke took effect), every sign
    # counts — a start written earlier too — and the backend must have been read: a
    # restarted operator knows nothing yet.
    ran = started or bool(status.get("startTime"))
    if not obs.backend_read and not ran and phase is not Phase.DISPATCHING:
        return Step(wake_at=obs.now + timedelta(seconds=1), track=True)

    revoke = spec.revoke if spec is not None else None
    if revoke is None and phase is Phase.REVOKING:
        revoke = RevokeRequest()  # the spec broke since: keep enforcing what was asked
    if revoke is not None and state not in (cs.SUCCESS, cs.FAILURE, cs.REVOKED):
        return revoking(obs, revoke, task_id, attempt, ran, phase)

    if state == cs.UNREADABLE and backend is not None:
        return unreadable_record(obs, backend, task_id, phase)
    expires_at = time_of(status, "expiresAt")
    if state == cs.PENDING and not ran and expires_at is not None and obs.now >= expires_at:
        return expired_in_queue(obs, task_id, attempt, expires_at)
    if phase is Phase.DISPATCHING and state == cs.PENDING:
        return _unconfirmed(obs, cfg, task_id, attempt)

    if state == cs.SUCCESS and backend is not None:
        return _succeeded(obs, backend, attempt)
    if state == cs.FAILURE and backend is not None:
        return _failed(obs, spec, backend, attempt)
    if state == cs.REVOKED and backend is not None:
        return _revoked_by_celery(obs, backend, attempt)
    if started:
        if obs.worker_alive is False and state != cs.RETRY:
            return _lost(obs, spec, backend, attempt)
        return _running(obs, cfg, backend, phase)
    # PENDING: queued (or waiting for a worker). A broker that restarted empty lost it.
    recorded_run_id = status.get("brokerRunId")
    if obs.broker_run_id and recorded_run_id and recorded_run_id != obs.broker_run_id:
        message = (
            f"the broker restarted (run id {recorded_run_id} → {obs.broker_run_id}) before a "
            f"worker took task {task_id}: published it again"
        )
        return Step(
            status={"brokerRunId": obs.broker_run_id},
            publish=republish_order(obs, task_id, attempt),
            notices=(Notice("Warning", "Republished", message),),
            track=True,
        )
    if phase is Phase.DISPATCHING:
        return _confirm(obs, task_id)
    # An unstarted task expires then: wake for it.
    expiry = expires_at if expires_at is not None and expires_at > obs.now and not ran else None
    return Step(track=True, wake_at=expiry)


def _unconfirmed(obs: Observed, cfg: LifecycleConfig, task_id: str, attempt: int) -> Step:
    if not isinstance(obs.spec, ScheduledTaskSpec) and obs.published_here != task_id:
        # The spec broke after the claim: nothing can be (re)published from it. Keep
        # reading the backend (the message may have gone out and run); the task moves
        # on once the spec is fixed.
        return Step(wake_at=obs.now + cfg.claim_lease, track=True)
    failure = obs.publish_failure
    if failure is not None and failure.task_id == task_id:
        return publish_failed(obs, cfg, failure, task_id, attempt)
    if obs.published_here == task_id:
        if obs.confirm_after is not None and obs.now < obs.confirm_after:
            # Marked sent in the result store: that is the confirm. A task that ends
            # (or starts) before then is written once, from Dispatching.
            return Step(wake_at=obs.confirm_after, track=True)
        return _confirm(obs, task_id)
    claim = obs.status.get("claim") or {}
    claimed_at = parse_time(str(claim["time"])) if claim.get("time") else None
    if claimed_at is not None and obs.now < claimed_at + cfg.claim_lease:
        return Step(wake_at=claimed_at + cfg.claim_lease, track=True)
    if not obs.backend_read:
        # After a restart "no record" is not known yet: the message may have gone out
        # and run (an ETA task often has) before the claimer died. Read first.
        return Step(wake_at=obs.now + timedelta(seconds=1), track=True)
    if obs.marks_kept:
        read_at = obs.sent_marks_read_at
        if read_at is None or (claimed_at is not None and read_at < claimed_at + cfg.claim_lease):
            # Its sent mark, read after the claim expired (the claimer may have sent it
            # just before): found, the message is out there and is not sent again.
            return Step(wake_at=obs.now + timedelta(seconds=1), track=True)
        if obs.sent_mark_run_id is not None:
            return _confirm(obs, task_id, f"its claimer sent task {task_id} before it "
                            "stopped (the sent mark says so): not published again")
    # Nobody confirmed within the lease: the claimer died around its publish. Claim again
    # (conditional, so only one taker) and publish the same id.
    patch = StatusPatch(obs).set(claim={"holder": cfg.holder, "time": precise(obs.now)})
    message = (
        f"took over an unconfirmed dispatch of task {task_id}: its claimer stopped before "
        "confirming, so it is published again under the same id (without the worker guard "
        "it may run twice)"
    )
    return Step(
        status=patch.done(Phase.DISPATCHING, "Dispatching", message),
        publish=republish_order(obs, task_id, attempt),
        notices=(Notice("Warning", "TookOver", message),),
        wake_at=obs.now + cfg.claim_lease,
    )


def _confirm(obs: Observed, task_id: str, message: str | None = None) -> Step:
    # The broker's run id when the message went out: a later, different one means a
    # restart that may have lost it. Without it a restart could not be noticed: wait.
    run_id = obs.published_run_id or obs.sent_mark_run_id or obs.broker_run_id
    if run_id is None:
        return Step(wake_at=obs.now + timedelta(milliseconds=500), track=True)
    message = message or f"sent task {task_id}"
    patch = StatusPatch(obs).set(queuedTime=queued_time(obs), brokerRunId=run_id)
    return Step(
        status=patch.done(Phase.QUEUED, "Queued", message),
        notices=(Notice("Normal", "Dispatched", message),),
        track=True,
        wake_at=future_or_none(time_of(obs.status, "expiresAt"), obs.now),  # it expires then
    )


def _running(
    obs: Observed, cfg: LifecycleConfig, backend: TaskState | None, phase: Phase | None
) -> Step:
    status = obs.status
    started = obs.started_hint or obs.now
    worker = (backend.worker if backend else None) or status.get("worker")
    retries = backend.retries if backend and backend.retries is not None else None
    if backend is not None and backend.status == cs.RETRY:
        seen = int(status.get("retries") or 0)
        # Without result_extended the backend has no count: report at least one retry,
        # never a count that grows with every re-plan of the same record.
        count = retries if retries is not None else max(seen, 1)
        if phase is Phase.RETRYING and seen >= count:
            return Step(track=True)
        patch = StatusPatch(obs).set(retries=count, worker=worker)
        if not status.get("startTime"):
            patch.set(startTime=precise(started))
        message = f"Celery retry {count} of task {status.get('taskId')}"
        return Step(status=patch.done(Phase.RETRYING, "CeleryRetry", message), track=True)
    if phase is Phase.STARTED:
        return Step(track=True)
    # Coalesce: a task that finishes within the window never gets a Started write.
    if obs.now < started + cfg.started_coalesce:
        return Step(wake_at=started + cfg.started_coalesce, track=True)
    fields: dict[str, Any] = {"startTime": precise(started), "worker": worker}
    if phase is Phase.DISPATCHING:
        fields["queuedTime"] = queued_time(obs)
        fields["brokerRunId"] = obs.broker_run_id
    message = f"running on {worker}" if worker else "running"
    patch = StatusPatch(obs).set(**fields)
    return Step(status=patch.done(Phase.STARTED, "Started", message), track=True)


def _finish_fields(obs: Observed, backend: TaskState) -> dict[str, Any]:
    done = backend.date_done or obs.now
    start = obs.status.get("startTime") or fmt_precise(obs.started_hint) or precise(done)
    fields: dict[str, Any] = {
        "completionTime": precise(done),
        "startTime": start,
        "worker": backend.worker or obs.status.get("worker"),
        "queuedTime": obs.status.get("queuedTime") or queued_time(obs),
    }
    if backend.retries:
        fields["retries"] = backend.retries
    return fields


def _succeeded(obs: Observed, backend: TaskState, attempt: int) -> Step:
    result, truncated = capped_result(backend.result, RESULT_LIMIT)
    fields = _finish_fields(obs, backend)
    patch = StatusPatch(obs).set(
        **fields,
        result=result,
        resultTruncated=True if truncated else None,
        error=None,
        attempts=attempt_record(
            obs, attempt, Phase.SUCCEEDED,
            startTime=fields["startTime"], completionTime=fields["completionTime"],
            worker=fields["worker"],
        ),
    )
    message = f"task {backend.task_id} succeeded" + (f" on {fields['worker']}" if fields[
        "worker"] else "")
    if truncated:
        message += f" (result over {RESULT_LIMIT // 1024} KiB: truncated in status)"
    return Step(
        status=patch.done(Phase.SUCCEEDED, "Succeeded", message),
        notices=(Notice("Normal", "Succeeded", message),),
        finished_outcome=Phase.SUCCEEDED.value,
    )


def _error(backend: TaskState) -> dict[str, Any]:
    return dict(task_error(
        backend.exception_type or "Error", backend.exception_message or "", backend.traceback
    ))


def _failed(
    obs: Observed, spec: ScheduledTaskSpec | None, backend: TaskState, attempt: int
) -> Step:
    what = f"task {backend.task_id} failed"
    return _attempt_ended(obs, spec, attempt, _error(backend), _finish_fields(obs, backend),
                          outcome="Failed", what=what)


def _lost(
    obs: Observed, spec: ScheduledTaskSpec | None, backend: TaskState | None, attempt: int
) -> Step:
    """The worker running the task went away (offline, or its heartbeats stopped)."""
    worker = (backend.worker if backend else None) or obs.status.get("worker") or "the worker"
    task_id = obs.status.get("taskId")
    error = dict(task_error("WorkerLost", f"{worker} went away while running task {task_id}"))
    fields = {
        "completionTime": precise(obs.now),
        "startTime": (
            obs.status.get("startTime") or fmt_precise(obs.started_hint) or precise(obs.now)
        ),
        "worker": worker,
        "queuedTime": obs.status.get("queuedTime") or queued_time(obs),
    }
    return _attempt_ended(obs, spec, attempt, error, fields, outcome="Lost",
                          what=f"task {task_id} was lost")


def _attempt_ended(
    obs: Observed,
    spec: ScheduledTaskSpec | None,
    attempt: int,
    error: dict[str, Any],
    fields: dict[str, Any],
    *,
    outcome: str,  # the retry.on value that applies: Failed or Lost
    what: str,
) -> Step:
    """An attempt ended badly: retry by policy, or fail the task."""
    attempts = attempt_record(
        obs, attempt, Phase.FAILED, error=attempt_error(error["type"], error["message"]),
        startTime=fields["startTime"], completionTime=fields["completionTime"],
        worker=fields["worker"],
    )
    what = f"{what}: {error['type']}: {error['message']}"[:MESSAGE_LIMIT]
    retry = spec.retry if spec is not None else None
    if retry is not None and outcome in retry.on and attempt < 1 + retry.limit:
        delay = retry_delay(
            attempt + 1,
            initial_seconds=retry.initial_seconds,
            factor=retry.factor,
            max_seconds=retry.max_seconds,
        )
        at = obs.now + delay
        message = f"{what}; attempt {attempt + 1} of {1 + retry.limit} at {format_time(at)}"
        patch = StatusPatch(obs).set(
            **fields, error=error, attempts=attempts, nextAttemptTime=precise(at)
        )
        return Step(
            status=patch.done(Phase.RETRYING, "WaitingToRetry", message),
            notices=(Notice("Warning", "TaskFailed", message),),
            wake_at=at,
        )
    patch = StatusPatch(obs).set(**fields, error=error, attempts=attempts, result=None)
    return Step(
        status=patch.done(Phase.FAILED, "TaskFailed", what),
        notices=(Notice("Warning", "TaskFailed", what),),
        finished_outcome=Phase.FAILED.value,
    )


def _revoked_by_celery(obs: Observed, backend: TaskState, attempt: int) -> Step:
    expires_at = time_of(obs.status, "expiresAt")
    done = backend.date_done or obs.now
    if expires_at is not None and done >= expires_at:
        phase, reason = Phase.EXPIRED, "Expired"
        message = f"task {backend.task_id} reached a worker after it expired; not run"
        notice = Notice("Warning", "Expired", message)
    else:
        phase, reason = Phase.REVOKED, "Revoked"
        message = f"task {backend.task_id} was revoked in Celery"
        notice = Notice("Normal", "Revoked", message)
    patch = StatusPatch(obs).set(
        completionTime=precise(done),
        attempts=attempt_record(obs, attempt, phase, completionTime=precise(done)),
    )
    return Step(
        status=patch.done(phase, reason, message), notices=(notice,), finished_outcome=phase.value
    )
