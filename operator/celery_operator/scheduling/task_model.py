"""What the ScheduledTask planner works with: the observation, the step it returns,
task ids, the status patch builder and the small helpers every rule shares (pure)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from celery_operator.api import (
    InvalidSpec,
    Phase,
    RevokeRequest,
    ScheduledTaskSpec,
    format_time,
    parse_time,
    set_condition,
)
from celery_operator.api.celery_state import TaskState
from celery_operator.api.status import (
    MAX_ATTEMPTS,
    keep_last,
)

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


# Normal Events every task would post: off unless asked for (--task-events=all).
ROUTINE_EVENTS = frozenset({"Scheduled", "Dispatched", "Succeeded"})


@dataclass(frozen=True)
class LifecycleConfig:
    dispatch_lead: timedelta = timedelta(seconds=2)  # publish this early, with eta=dueTime
    claim_lease: timedelta = timedelta(seconds=15)  # take over an unconfirmed claim after
    started_coalesce: timedelta = timedelta(seconds=1)  # skip the Started write if it ends by then
    # A publish marked sent in the result store is confirmed by the mark: `Queued` is
    # written only for a task still waiting this long after its due time.
    queued_after: timedelta = timedelta(seconds=2)
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
    # This process's publish is marked sent: write Queued only if it still waits then
    # (None: confirm at once — no mark, or shutting down).
    confirm_after: datetime | None = None
    # The app's result store keeps sent marks; when this process last read the mark of
    # the current task id, and the broker run id it was found sent to (None: not found).
    marks_kept: bool = False
    sent_marks_read_at: datetime | None = None
    sent_mark_run_id: str | None = None
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
class StatusPatch:
    """Builds a status merge patch together with its conditions."""

    obs: Observed
    fields: dict[str, Any] = field(default_factory=dict)

    def set(self, **values: Any) -> StatusPatch:
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


def time_of(status: Mapping[str, Any], key: str) -> datetime | None:
    value = status.get(key)
    return parse_time(str(value)) if value else None




def fmt_precise(value: datetime | None) -> str | None:
    return precise(value) if value is not None else None


def precise(value: datetime) -> str:
    """Times the operator acts on keep their fraction of a second (eta may have one)."""
    return format_time(value, fraction=True)


def future_or_none(at: datetime | None, now: datetime) -> datetime | None:
    return at if at is not None and at > now else None


def attempt_record(obs: Observed, attempt: int, phase: Phase, **extra: Any) -> list[Any]:
    status = obs.status
    record = {
        "attempt": attempt,
        "taskId": status.get("taskId"),
        "phase": phase.value,
        "queuedTime": extra.pop("queuedTime", None) or status.get("queuedTime")
        or (precise(obs.published_at) if obs.published_at else None),
        "startTime": extra.pop("startTime", None) or status.get("startTime"),
        "completionTime": extra.pop("completionTime", None),
        "worker": extra.pop("worker", None) or status.get("worker"),
        **extra,
    }
    record = {k: v for k, v in record.items() if v is not None}
    previous = [a for a in status.get("attempts") or [] if a.get("attempt") != attempt]
    return keep_last([*previous, record], MAX_ATTEMPTS)


def queued_time(obs: Observed) -> str:
    """When it was published: this process knows; after a restart, now is the best guess."""
    return precise(obs.published_at or obs.now)


def republish_order(obs: Observed, task_id: str, attempt: int) -> Publish:
    status = obs.status
    eta = time_of(status, "nextAttemptTime") or time_of(status, "dueTime") or obs.now
    return Publish(task_id=task_id, attempt=attempt, eta=eta, expires=time_of(status, "expiresAt"))

