"""The ScheduledTask state machine: given what is observed now, the next step.

Pure: the controller gathers the object, the backend's record of its task id and the
time, calls `plan_step`, and carries the step out (a conditional status write, then a
publish, a revoke, a delete or an Event). Every rule about phases lives here, so it
is tested with plain values and a fake clock.

The dispatch protocol (DESIGN.md, "Claim → publish → confirm"):
  1. claim: phase Dispatching with a deterministic task id, written with a
     resourceVersion precondition — of two operators only one write succeeds;
  2. publish the message (only the process whose claim succeeded);
  3. confirm: phase Queued.
A claim older than `claim_lease` with nobody confirming is taken over and the *same*
task id published again (at-least-once; the worker-side guard makes it exactly-once).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
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
    get_condition,
    parse_time,
    set_condition,
)
from celery_operator.api import celery_state as cs
from celery_operator.api.celery_state import TaskState
from celery_operator.api.limits import fit_status
from celery_operator.api.status import (
    MAX_ATTEMPTS,
    attempt_error,
    capped_result,
    keep_last,
    task_error,
    truncate,
)
from celery_operator.scheduling.duetime import resolve_due_time, resolve_expiry, retry_delay
from celery_operator.scheduling.revoke import cannot_run_any_more, next_broadcast

# uuid5 namespace of our task ids: id = uuid5(NS, "<object uid>/<attempt>").
TASK_ID_NAMESPACE = uuid.UUID("6f1c1b8e-6c53-4c55-9d0e-2f1a3c0de001")

RESULT_LIMIT = 32 * 1024  # bytes of JSON kept in status.result
MESSAGE_LIMIT = 2 * 1024  # condition messages
EVENT_MESSAGE_LIMIT = 1024  # what an Event's message may hold (kube.client cuts there too)

# Phases with a message out there that may still run (a revoke may still be needed).
IN_FLIGHT = frozenset({Phase.DISPATCHING, Phase.QUEUED, Phase.STARTED, Phase.REVOKING})


def task_id_for(uid: str, attempt: int) -> str:
    """The Celery task id of attempt `attempt` of the object `uid`: the same on every
    replica and after every restart, so a republish never creates a second identity."""
    return str(uuid.uuid5(TASK_ID_NAMESPACE, f"{uid}/{attempt}"))


def current_attempt(status: Mapping[str, Any]) -> int:
    attempt = status.get("attempt")
    if isinstance(attempt, int) and not isinstance(attempt, bool) and attempt >= 1:
        return attempt
    return 1


def current_task_id(uid: str, status: Mapping[str, Any]) -> str | None:
    """The task id the operator acts on (tracks, revokes, republishes) for this status.

    Derived from the object's uid and attempt, never read back from status.taskId: anyone
    who may patch the status subresource could write another task's id there and have
    the operator revoke or terminate it. A status.taskId that differs is corrected."""
    if not status.get("taskId"):
        return None
    return task_id_for(uid, current_attempt(status))


@dataclass(frozen=True)
class LifecycleConfig:
    dispatch_lead: timedelta = timedelta(seconds=2)  # publish this early, with eta=dueTime
    claim_lease: timedelta = timedelta(seconds=15)  # take over an unconfirmed claim after
    started_coalesce: timedelta = timedelta(seconds=1)  # skip the Started write if it ends by then
    holder: str = "celery-operator"  # who claims: shown in status.claim.holder


@dataclass(frozen=True)
class Observed:
    """Everything the planner may look at, gathered by the controller."""

    uid: str
    generation: int
    created: datetime
    spec: ScheduledTaskSpec | InvalidSpec
    status: Mapping[str, Any]
    now: datetime
    backend: TaskState | None = None  # the record of status.taskId (None: nothing stored)
    backend_read: bool = True  # False: this process has not read the backend for it yet
    broker_run_id: str | None = None  # the broker's current run id, if known
    published_here: str | None = None  # the task id this process published since its claim
    published_run_id: str | None = None  # the broker's run id just before that publish
    published_at: datetime | None = None  # when this process published it (queuedTime)
    started_hint: datetime | None = None  # first sign the task started (event or backend)
    # Is the worker running the task alive? None: unknown (no worker events seen from it).
    worker_alive: bool | None = None
    # Claim this much earlier than the dispatch lead: many tasks share this due time, and
    # each claim is an API write; the message still carries eta = the due time.
    extra_lead: timedelta = timedelta(0)
    # This process's last publish of the claimed task id failed (None: it did not fail).
    publish_failure: PublishFailure | None = None
    # When this process last broadcast the revoke of the current task id, and how often.
    revoke_sent_at: datetime | None = None
    revoke_sends: int = 0
    # Why the task's Celery app cannot take it now: (reason, message naming the field) —
    # the app is missing, the namespace may not use it, or its policy refuses the task.
    app_problem: tuple[str, str] | None = None


@dataclass(frozen=True)
class PublishFailure:
    """A publish that failed, as the controller classified it."""

    task_id: str
    permanent: bool  # it cannot succeed on retry (e.g. the message cannot be encoded)
    reason: str  # CamelCase, e.g. BrokerUnavailable, NoRoute, EncodeError
    message: str  # safe to show a tenant: no broker URL, host or credentials
    retry_at: datetime  # a transient failure is retried then (capped exponential backoff)


@dataclass(frozen=True)
class Publish:
    task_id: str
    attempt: int
    eta: datetime
    expires: datetime | None


@dataclass(frozen=True)
class Notice:
    """A Kubernetes Event to post."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Step:
    """What to do now. `status` is a merge patch (None values remove fields), written
    with a resourceVersion precondition before anything else in the step happens."""

    status: dict[str, Any] | None = None
    publish: Publish | None = None
    revoke: RevokeRequest | None = None
    delete: bool = False
    notices: tuple[Notice, ...] = ()
    wake_at: datetime | None = None
    track: bool = False  # keep reading the backend for status.taskId
    finished_outcome: str | None = None  # for metrics: the final phase reached in this step

    @property
    def idle(self) -> bool:
        return self.status is None and self.publish is None and self.revoke is None and not (
            self.delete
        )


@dataclass
class _Patch:
    """Builds a status merge patch together with its conditions."""

    obs: Observed
    fields: dict[str, Any] = field(default_factory=dict)

    def set(self, **values: Any) -> _Patch:
        self.fields.update(values)
        return self

    def done(
        self,
        phase: Phase,
        reason: str,
        message: str,
        *,
        ready: bool | None = None,
        stalled: bool | None = None,
    ) -> dict[str, Any]:
        self.fields["phase"] = phase.value
        self.fields["observedGeneration"] = self.obs.generation
        self.fields["conditions"] = conditions_for(
            self.obs.status.get("conditions") or [],
            phase=phase,
            reason=reason,
            message=message,
            generation=self.obs.generation,
            now=self.obs.now,
            ready=ready,
            stalled=stalled,
        )
        return self.fields


def conditions_for(
    current: Any,
    *,
    phase: Phase,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
    ready: bool | None = None,
    stalled: bool | None = None,
) -> list[dict[str, Any]]:
    """Ready/Stalled as kstatus reads them: a task that is scheduled, running or done
    is Current (Ready=True); a failed, expired or invalid one is Stalled. `ready=False`
    marks a task that is in trouble but still being retried (Ready=False, not Stalled)."""
    failed = phase in (Phase.FAILED, Phase.EXPIRED, Phase.INVALID)
    if ready is None:
        ready = not failed
    if stalled is not None:
        failed = stalled
    conditions = set_condition(
        current,
        type="Ready",
        status="True" if ready else "False",
        reason=reason,
        message=message,
        generation=generation,
        now=now,
    )
    return set_condition(
        conditions,
        type="Stalled",
        status="True" if failed else "False",
        reason=reason,
        message=message if failed else "",
        generation=generation,
        now=now,
    )


def _time(status: Mapping[str, Any], key: str) -> datetime | None:
    value = status.get(key)
    return parse_time(str(value)) if value else None


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
    finished_at = _time(obs.status, "completionTime") or obs.now
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
    patch = _Patch(obs).done(Phase.INVALID, "InvalidSpec", message)
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
    due = _time(status, "dueTime")
    if due is None or (generation_changed and not waiting_retry):
        due = resolve_due_time(eta=spec.eta, countdown=spec.countdown, created=obs.created)
    expires_at = resolve_expiry(
        expires_seconds=spec.expires_seconds, expires_at=spec.expires_at, due=due
    )
    attempt = int(status.get("attempt") or 0) + 1 if waiting_retry else 1
    fire_at = (_time(status, "nextAttemptTime") or due) if waiting_retry else due
    base = {"dueTime": _precise(due), "expiresAt": _fmt(expires_at)}

    if spec.revoke is not None:
        patch = _Patch(obs).set(**base, completionTime=_precise(obs.now), nextAttemptTime=None)
        message = "revoked before dispatch: the message was never sent"
        return Step(
            status=patch.done(Phase.REVOKED, "RevokedBeforeDispatch", message),
            notices=(Notice("Normal", "Revoked", message),),
            finished_outcome=Phase.REVOKED.value,
        )
    if expires_at is not None and obs.now >= expires_at:
        patch = _Patch(obs).set(**base, completionTime=_precise(obs.now), nextAttemptTime=None)
        message = f"not sent: it expired at {format_time(expires_at)} before it could be sent"
        return Step(
            status=patch.done(Phase.EXPIRED, "Expired", message),
            notices=(Notice("Warning", "Expired", message),),
            finished_outcome=Phase.EXPIRED.value,
        )
    lead = cfg.dispatch_lead + obs.extra_lead
    if obs.app_problem is not None and not waiting_retry:
        return _held_by_app(obs, base, phase, generation_changed, fire_at - lead)
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
        retry_patch = _Patch(obs).set(**base)
        return Step(
            status=retry_patch.done(Phase.RETRYING, "WaitingToRetry", _retry_msg(fire_at)),
            wake_at=wake,
        )
    message = f"due at {base['dueTime']}"
    scheduled = _Patch(obs).set(**base).done(Phase.SCHEDULED, "Scheduled", message)
    notices = () if phase is Phase.SCHEDULED else (Notice("Normal", "Scheduled", message),)
    return Step(status=scheduled, wake_at=wake, notices=notices)


def _held_by_app(
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
    patch = _Patch(obs).set(**base).done(Phase.SCHEDULED, reason, message, ready=False,
                                         stalled=True)
    return Step(status=patch, notices=(Notice("Warning", reason, message),), wake_at=wake)


def _retry_msg(at: datetime) -> str:
    return f"next attempt at {format_time(at)}"


def _fmt(value: datetime | None) -> str | None:
    return _precise(value) if value is not None else None


def _precise(value: datetime) -> str:
    """Times the operator acts on keep their fraction of a second (eta may have one)."""
    return format_time(value, fraction=True)


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
    patch = _Patch(obs).set(
        **base,
        taskId=task_id,
        attempt=attempt,
        claim={"holder": cfg.holder, "time": _precise(obs.now)},
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
        return _corrected(obs, task_id)
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
        return _revoking(obs, revoke, task_id, attempt, ran, phase)

    if state == cs.UNREADABLE and backend is not None:
        return _unreadable(obs, backend, task_id, phase)
    expires_at = _time(status, "expiresAt")
    if state == cs.PENDING and not ran and expires_at is not None and obs.now >= expires_at:
        return _expired_in_queue(obs, task_id, attempt, expires_at)
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
            publish=_republish(obs, task_id, attempt),
            notices=(Notice("Warning", "Republished", message),),
            track=True,
        )
    if phase is Phase.DISPATCHING:
        return _confirm(obs, task_id)
    # An unstarted task expires then: wake for it.
    expiry = expires_at if expires_at is not None and expires_at > obs.now and not ran else None
    return Step(track=True, wake_at=expiry)


def _corrected(obs: Observed, task_id: str) -> Step:
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


def _revoking(
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
        expires_at=_time(status, "expiresAt"),
        now=obs.now,
        broker_lost_it=bool(
            obs.broker_run_id and recorded_run_id and recorded_run_id != obs.broker_run_id
        ),
    )
    if why is not None:
        message = f"task {task_id} revoked: {why}"
        now = _precise(obs.now)
        patch = _Patch(obs).set(
            completionTime=now,
            attempts=_attempt_record(obs, attempt, Phase.REVOKED, completionTime=now),
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
        status=_Patch(obs).done(Phase.REVOKING, "Revoking", message),
        revoke=revoke,
        notices=(Notice("Normal", "Revoking", message),),
        wake_at=wake,
        track=True,
    )


def _unreadable(obs: Observed, backend: TaskState, task_id: str, phase: Phase | None) -> Step:
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
        status=_Patch(obs).done(phase, "UnreadableResult", message, ready=False),
        notices=(Notice("Warning", "UnreadableResult", message),),
        track=True,
    )


def _expired_in_queue(obs: Observed, task_id: str, attempt: int, expires_at: datetime) -> Step:
    """Sent, but no worker started it before it expired: it will never run (workers
    refuse expired messages); revoke it too, so none even tries."""
    now = _precise(obs.now)
    message = (
        f"task {task_id} expired at {format_time(expires_at)} while waiting in the queue: "
        "no worker started it in time"
    )
    patch = _Patch(obs).set(
        completionTime=now,
        attempts=_attempt_record(obs, attempt, Phase.EXPIRED, completionTime=now),
    )
    return Step(
        status=patch.done(Phase.EXPIRED, "Expired", message),
        revoke=RevokeRequest(terminate=False),
        notices=(Notice("Warning", "Expired", message),),
        finished_outcome=Phase.EXPIRED.value,
    )


def _republish(obs: Observed, task_id: str, attempt: int) -> Publish:
    status = obs.status
    eta = _time(status, "nextAttemptTime") or _time(status, "dueTime") or obs.now
    return Publish(task_id=task_id, attempt=attempt, eta=eta, expires=_time(status, "expiresAt"))


def _unconfirmed(obs: Observed, cfg: LifecycleConfig, task_id: str, attempt: int) -> Step:
    if not isinstance(obs.spec, ScheduledTaskSpec) and obs.published_here != task_id:
        # The spec broke after the claim: nothing can be (re)published from it. Keep
        # reading the backend (the message may have gone out and run); the task moves
        # on once the spec is fixed.
        return Step(wake_at=obs.now + cfg.claim_lease, track=True)
    failure = obs.publish_failure
    if failure is not None and failure.task_id == task_id:
        return _publish_failed(obs, cfg, failure, task_id, attempt)
    if obs.published_here == task_id:
        return _confirm(obs, task_id)
    claim = obs.status.get("claim") or {}
    claimed_at = parse_time(str(claim["time"])) if claim.get("time") else None
    if claimed_at is not None and obs.now < claimed_at + cfg.claim_lease:
        return Step(wake_at=claimed_at + cfg.claim_lease, track=True)
    if not obs.backend_read:
        # After a restart "no record" is not known yet: the message may have gone out
        # and run (an ETA task often has) before the claimer died. Read first.
        return Step(wake_at=obs.now + timedelta(seconds=1), track=True)
    # Nobody confirmed within the lease: the claimer died around its publish. Claim again
    # (conditional, so only one taker) and publish the same id.
    patch = _Patch(obs).set(claim={"holder": cfg.holder, "time": _precise(obs.now)})
    message = (
        f"took over an unconfirmed dispatch of task {task_id}: its claimer stopped before "
        "confirming, so it is published again under the same id (without the worker guard "
        "it may run twice)"
    )
    return Step(
        status=patch.done(Phase.DISPATCHING, "Dispatching", message),
        publish=_republish(obs, task_id, attempt),
        notices=(Notice("Warning", "TookOver", message),),
        wake_at=obs.now + cfg.claim_lease,
    )


def _publish_failed(
    obs: Observed, cfg: LifecycleConfig, failure: PublishFailure, task_id: str, attempt: int
) -> Step:
    """This process claimed the task and could not publish it. A permanent failure ends
    the task (Failed, DispatchFailed); a transient one is retried with capped backoff,
    reported once per distinct message (condition Ready=False and a Warning)."""
    if failure.permanent:
        message = f"could not publish task {task_id}: {failure.message}"[:MESSAGE_LIMIT]
        now = _precise(obs.now)
        patch = _Patch(obs).set(
            completionTime=now,
            error=dict(task_error(failure.reason, failure.message)),
            attempts=_attempt_record(
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
            status=_Patch(obs).done(Phase.DISPATCHING, "DispatchFailed", message, ready=False),
            notices=(Notice("Warning", "DispatchFailed", message),),
            wake_at=failure.retry_at,
            track=True,
        )
    # Try again: claim again first (conditional, renews the lease), then publish.
    patch = _Patch(obs).set(claim={"holder": cfg.holder, "time": _precise(obs.now)})
    return Step(
        status=patch.done(Phase.DISPATCHING, "DispatchFailed", message, ready=False),
        publish=_republish(obs, task_id, attempt),
        wake_at=obs.now + cfg.claim_lease,
    )


def _confirm(obs: Observed, task_id: str) -> Step:
    # The broker's run id when the message went out: a later, different one means a
    # restart that may have lost it. Without it a restart could not be noticed: wait.
    run_id = obs.published_run_id or obs.broker_run_id
    if run_id is None:
        return Step(wake_at=obs.now + timedelta(milliseconds=500), track=True)
    message = f"sent task {task_id}"
    patch = _Patch(obs).set(queuedTime=_queued(obs), brokerRunId=run_id)
    return Step(
        status=patch.done(Phase.QUEUED, "Queued", message),
        notices=(Notice("Normal", "Dispatched", message),),
        track=True,
        wake_at=_future(_time(obs.status, "expiresAt"), obs.now),  # it expires then
    )


def _future(at: datetime | None, now: datetime) -> datetime | None:
    return at if at is not None and at > now else None


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
        patch = _Patch(obs).set(retries=count, worker=worker)
        if not status.get("startTime"):
            patch.set(startTime=_precise(started))
        message = f"Celery retry {count} of task {status.get('taskId')}"
        return Step(status=patch.done(Phase.RETRYING, "CeleryRetry", message), track=True)
    if phase is Phase.STARTED:
        return Step(track=True)
    # Coalesce: a task that finishes within the window never gets a Started write.
    if obs.now < started + cfg.started_coalesce:
        return Step(wake_at=started + cfg.started_coalesce, track=True)
    fields: dict[str, Any] = {"startTime": _precise(started), "worker": worker}
    if phase is Phase.DISPATCHING:
        fields["queuedTime"] = _queued(obs)
        fields["brokerRunId"] = obs.broker_run_id
    message = f"running on {worker}" if worker else "running"
    patch = _Patch(obs).set(**fields)
    return Step(status=patch.done(Phase.STARTED, "Started", message), track=True)


def _attempt_record(obs: Observed, attempt: int, phase: Phase, **extra: Any) -> list[Any]:
    status = obs.status
    record = {
        "attempt": attempt,
        "taskId": status.get("taskId"),
        "phase": phase.value,
        "queuedTime": extra.pop("queuedTime", None) or status.get("queuedTime")
        or (_precise(obs.published_at) if obs.published_at else None),
        "startTime": extra.pop("startTime", None) or status.get("startTime"),
        "completionTime": extra.pop("completionTime", None),
        "worker": extra.pop("worker", None) or status.get("worker"),
        **extra,
    }
    record = {k: v for k, v in record.items() if v is not None}
    previous = [a for a in status.get("attempts") or [] if a.get("attempt") != attempt]
    return keep_last([*previous, record], MAX_ATTEMPTS)


def _queued(obs: Observed) -> str:
    """When it was published: this process knows; after a restart, now is the best guess."""
    return _precise(obs.published_at or obs.now)


def _finish_fields(obs: Observed, backend: TaskState) -> dict[str, Any]:
    done = backend.date_done or obs.now
    start = obs.status.get("startTime") or _fmt(obs.started_hint) or _precise(done)
    fields: dict[str, Any] = {
        "completionTime": _precise(done),
        "startTime": start,
        "worker": backend.worker or obs.status.get("worker"),
        "queuedTime": obs.status.get("queuedTime") or _queued(obs),
    }
    if backend.retries:
        fields["retries"] = backend.retries
    return fields


def _succeeded(obs: Observed, backend: TaskState, attempt: int) -> Step:
    result, truncated = capped_result(backend.result, RESULT_LIMIT)
    fields = _finish_fields(obs, backend)
    patch = _Patch(obs).set(
        **fields,
        result=result,
        resultTruncated=True if truncated else None,
        error=None,
        attempts=_attempt_record(
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
        "completionTime": _precise(obs.now),
        "startTime": obs.status.get("startTime") or _fmt(obs.started_hint) or _precise(obs.now),
        "worker": worker,
        "queuedTime": obs.status.get("queuedTime") or _queued(obs),
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
    attempts = _attempt_record(
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
        patch = _Patch(obs).set(
            **fields, error=error, attempts=attempts, nextAttemptTime=_precise(at)
        )
        return Step(
            status=patch.done(Phase.RETRYING, "WaitingToRetry", message),
            notices=(Notice("Warning", "TaskFailed", message),),
            wake_at=at,
        )
    patch = _Patch(obs).set(**fields, error=error, attempts=attempts, result=None)
    return Step(
        status=patch.done(Phase.FAILED, "TaskFailed", what),
        notices=(Notice("Warning", "TaskFailed", what),),
        finished_outcome=Phase.FAILED.value,
    )


def _revoked_by_celery(obs: Observed, backend: TaskState, attempt: int) -> Step:
    expires_at = _time(obs.status, "expiresAt")
    done = backend.date_done or obs.now
    if expires_at is not None and done >= expires_at:
        phase, reason = Phase.EXPIRED, "Expired"
        message = f"task {backend.task_id} reached a worker after it expired; not run"
        notice = Notice("Warning", "Expired", message)
    else:
        phase, reason = Phase.REVOKED, "Revoked"
        message = f"task {backend.task_id} was revoked in Celery"
        notice = Notice("Normal", "Revoked", message)
    patch = _Patch(obs).set(
        completionTime=_precise(done),
        attempts=_attempt_record(obs, attempt, phase, completionTime=_precise(done)),
    )
    return Step(
        status=patch.done(phase, reason, message), notices=(notice,), finished_outcome=phase.value
    )
