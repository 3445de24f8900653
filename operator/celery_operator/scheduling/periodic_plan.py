"""The PeriodicTask controller's decisions: which child runs to create, cancel, delete.

Pure: the controller passes the PeriodicTask, its children (ScheduledTasks it owns) and
the time; `plan_periodic` answers. Runs are children named from the nominal fire time,
so creating one twice is `AlreadyExists`, never a second run (the CronJob rule).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery_operator.api import (
    FINISHED_PHASES,
    InvalidSpec,
    PeriodicTaskSpec,
    Phase,
    format_time,
    get_condition,
    parse_time,
    set_condition,
)
from celery_operator.api.expires import render_expires
from celery_operator.scheduling.cron import CronSchedule
from celery_operator.scheduling.interval import IntervalSchedule
from celery_operator.scheduling.missed import (
    TOO_MANY_MISSED,
    RunDecision,
    decide_run,
    overlap_action,
)
from celery_operator.scheduling.series import Bounds, Schedule, next_fire_times
from celery_operator.scheduling.wallclock import CrontabSchedule

RUN_REQUEST_ANNOTATION = "celeryoperator.dev/run-requested-at"
# status.lastHandledRunRequest's maxLength in the CRD: a longer request is remembered by
# its hash, so the status write is never refused for it.
HANDLED_REQUEST_MAX = 256
# How much of a bad annotation value an Event quotes.
QUOTED_MAX = 64
NEXT_TIMES_SHOWN = 5
RECENT_RUNS_KEPT = 10
# Re-check a little after the next fire time, as the CronJob controller does (clock skew).
WAKE_SLACK = timedelta(milliseconds=100)
PENDING_PHASES = frozenset({Phase.SCHEDULED, Phase.DISPATCHING, Phase.QUEUED})


@dataclass(frozen=True)
class Child:
    name: str
    scheduled_time: datetime
    phase: str | None
    manual: bool = False
    revoke_requested: bool = False
    uid: str | None = None  # deletes carry it as a precondition: never another object

    @property
    def finished(self) -> bool:
        return self.phase is not None and Phase(self.phase) in FINISHED_PHASES

    @property
    def shown_phase(self) -> str:
        """The phase the parent's status shows: every step before the worker starts it
        (Scheduled, Dispatching, Queued) is "Pending", so a run costs the parent two
        status writes (created, finished), not one per step of the child."""
        if self.phase is None or Phase(self.phase) in PENDING_PHASES:
            return "Pending"
        return self.phase


@dataclass(frozen=True)
class PeriodicObserved:
    name: str
    generation: int
    created: datetime
    spec: PeriodicTaskSpec | InvalidSpec
    status: Mapping[str, Any]
    annotations: Mapping[str, str]
    children: Sequence[Child]
    now: datetime


@dataclass(frozen=True)
class ChildOrder:
    name: str
    scheduled_time: datetime
    manual: bool = False


@dataclass(frozen=True)
class PeriodicNotice:
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class PeriodicStep:
    create: tuple[ChildOrder, ...] = ()
    revoke: tuple[str, ...] = ()  # children to cancel (Replace)
    delete: tuple[str, ...] = ()  # finished children beyond the history limits
    status: dict[str, Any] | None = None  # merge patch, written after the creates
    notices: tuple[PeriodicNotice, ...] = ()
    wake_at: datetime | None = None


@dataclass(frozen=True)
class PeriodicConfig:
    # Children are created this long before their nominal time (their eta is the nominal
    # time), so the ScheduledTask engine can publish them on time.
    create_ahead: timedelta = timedelta(seconds=2)


def child_name(parent: str, scheduled: datetime, manual: bool = False) -> str:
    """`<parent>-<unix seconds>`; run-now children get `-manual-` before the time."""
    stamp = int(scheduled.timestamp())
    return f"{parent}-manual-{stamp}" if manual else f"{parent}-{stamp}"


def run_request_token(request: str) -> str:
    """What status.lastHandledRunRequest records for a run-requested-at value: the value
    itself when it fits the schema, else its SHA-256 (compared the same way)."""
    if len(request) <= HANDLED_REQUEST_MAX:
        return request
    return "sha256:" + hashlib.sha256(request.encode("utf-8", "surrogatepass")).hexdigest()


def quoted(value: str) -> str:
    """A user-written value for a message: repr'd, and cut if long."""
    if len(value) <= QUOTED_MAX:
        return repr(value)
    return f"{value[:QUOTED_MAX]!r}... ({len(value)} characters)"


def _requested_time(request: str) -> datetime | None:
    try:
        requested = parse_time(request)
        child_name("x", requested)  # its unix seconds must be representable too
    except (ValueError, OverflowError):
        return None
    return requested


def schedule_of(spec: PeriodicTaskSpec, created: datetime) -> Schedule:
    if spec.schedule.cron is not None and spec.schedule.from_crontab:
        # The Celery-style object fires as celery beat fires it; cron as Debian cron.
        return CrontabSchedule(spec.schedule.cron, spec.schedule.time_zone)
    if spec.schedule.cron is not None:
        return CronSchedule(spec.schedule.cron, spec.schedule.time_zone)
    assert spec.schedule.interval is not None
    return IntervalSchedule(anchor=spec.start_time or created, every=spec.schedule.interval)


def _bounds(spec: PeriodicTaskSpec) -> Bounds:
    return Bounds(start_time=spec.start_time, end_time=spec.end_time, max_runs=spec.max_runs)


def _conditions(
    obs: PeriodicObserved, *, ready: bool, stalled: bool, reason: str, message: str
) -> list[dict[str, Any]]:
    conditions = set_condition(
        obs.status.get("conditions") or [], type="Ready", status=str(ready),
        reason=reason, message=message, generation=obs.generation, now=obs.now,
    )
    return set_condition(
        conditions, type="Stalled", status=str(stalled), reason=reason,
        message=message if stalled else "", generation=obs.generation, now=obs.now,
    )


def _overlap_decided_at_fire_time(spec: PeriodicTaskSpec, active: Sequence[Child]) -> bool:
    """Forbid and Replace judge the runs active at the fire time: a run that is active
    now may finish before it. Creating ahead would skip (Forbid) or revoke (Replace) up to
    create_ahead too early, so with a run active nothing is created ahead."""
    return bool(active) and spec.concurrency_policy != "Allow"


def plan_periodic(obs: PeriodicObserved, cfg: PeriodicConfig) -> PeriodicStep:
    """The next step for one PeriodicTask."""
    if isinstance(obs.spec, InvalidSpec):
        return _invalid(obs, obs.spec)
    spec = obs.spec
    status = obs.status
    schedule = schedule_of(spec, obs.created)
    bounds = _bounds(spec)
    total_runs = int(status.get("totalRuns") or 0)
    last = parse_time(status["lastScheduleTime"]) if status.get("lastScheduleTime") else None
    active = [c for c in obs.children if not c.finished and not c.revoke_requested]
    creates: list[ChildOrder] = []
    revokes: list[str] = []
    notices: list[PeriodicNotice] = []
    patch: dict[str, Any] = {}
    # Runs created whose status write was then lost or refused: they count (maxRuns, the
    # missed-run window) as if it had gone through, and are recorded now.
    unrecorded = [c for c in obs.children
                  if not c.manual and (last is None or c.scheduled_time > last)]
    if unrecorded:
        last = max(c.scheduled_time for c in unrecorded)
        total_runs += len(unrecorded)
        patch["lastScheduleTime"] = format_time(last, fraction=True)
        patch["totalRuns"] = total_runs
    missed = int(status.get("missedRuns") or 0)
    skipped = int(status.get("skippedRuns") or 0)

    # First what is due by now (CronJob's missed-run rule), then the next fire time if it
    # is within `create_ahead`: its child is created early, with eta = its nominal time.
    horizon = obs.now
    next_time: datetime | None = None
    for ahead in (False, True):
        last_before, total_before = last, total_runs
        decision = decide_run(
            schedule,
            last_schedule_time=last,
            created=obs.created,
            now=horizon,
            starting_deadline_seconds=spec.starting_deadline_seconds,
            bounds=bounds,
            runs_so_far=total_runs,
            suspended=spec.suspend,
        )
        next_time = decision.next_time
        if not spec.suspend:
            # Suspended: nothing moves, so resuming applies the missed-run rule to the
            # pause (as CronJob does). Else the window moves past the latest due time.
            if decision.latest_due is not None and (
                decision.fire_time is not None or decision.missed or decision.deadline_exceeded
            ):
                last = decision.latest_due
                # Keep the fraction: sub-second interval anchors must not be due twice.
                patch["lastScheduleTime"] = format_time(last, fraction=True)
            skipped_now = _missed_count(schedule, decision, obs, spec, bounds, horizon,
                                        last_before, total_before)
            if skipped_now:
                missed += skipped_now
                patch["missedRuns"] = missed
                many = skipped_now > TOO_MANY_MISSED
                reason = "TooManyMissedTimes" if many else "MissedSchedule"
                more = f" (over {TOO_MANY_MISSED})" if many else ""
                why = (
                    f"; the latest, {format_time(decision.latest_due)}, is older than "
                    f"startingDeadlineSeconds={spec.starting_deadline_seconds}"
                    if decision.deadline_exceeded and decision.latest_due else
                    ": only the most recent due time runs"
                )
                notices.append(PeriodicNotice(
                    "Warning", reason, f"missed {skipped_now} scheduled run(s){more}{why}",
                ))
        if decision.fire_time is not None:
            run = child_name(obs.name, decision.fire_time)
            # The run itself may exist already (created, then the status write was lost or
            # refused): it is not another run active at its own fire time.
            others = [c for c in active if c.name != run]
            action = overlap_action(spec.concurrency_policy, active_count=len(others))
            if action == "skip":
                skipped += 1
                patch["skippedRuns"] = skipped
                notices.append(PeriodicNotice(
                    "Normal", "SkippedRun",
                    f"skipped {format_time(decision.fire_time)}: concurrencyPolicy Forbid "
                    f"and {len(others)} run(s) still active",
                ))
            else:
                if action == "replace":
                    revokes += [c.name for c in others]
                order = ChildOrder(run, decision.fire_time)
                creates.append(order)
                active = [] if action == "replace" else others
                active.append(Child(order.name, order.scheduled_time, None))
                total_runs += 1
                patch["totalRuns"] = total_runs
        if ahead or next_time is None or next_time > obs.now + cfg.create_ahead:
            break
        upcoming_run = child_name(obs.name, next_time)
        if _overlap_decided_at_fire_time(spec, [c for c in active if c.name != upcoming_run]):
            break
        horizon = next_time

    request = obs.annotations.get(RUN_REQUEST_ANNOTATION)
    handled = run_request_token(request) if request else None
    if request and handled != status.get("lastHandledRunRequest"):
        requested = _requested_time(request)
        if requested is None:
            notices.append(PeriodicNotice(
                "Warning", "InvalidRunRequest",
                f"annotation {RUN_REQUEST_ANNOTATION} must be an RFC 3339 time, got "
                f"{quoted(request)}",
            ))
        else:
            creates.append(ChildOrder(child_name(obs.name, requested, manual=True), requested,
                                      manual=True))
            patch["totalRuns"] = total_runs + 1
            notices.append(PeriodicNotice(
                "Normal", "RunRequested",
                f"run requested at {format_time(requested)}: started one extra run",
            ))
        # Handled either way: a bad value is reported once, not on every wake-up.
        patch["lastHandledRunRequest"] = handled

    # An unrecorded run is the only evidence that its fire time ran: kept until recorded.
    deletes = _beyond_history(spec, [c for c in obs.children if c not in unrecorded])
    new_children = [
        *[c for c in obs.children if c.name not in deletes],
        *[Child(o.name, o.scheduled_time, None, o.manual) for o in creates
          if o.name not in {c.name for c in obs.children}],
    ]
    after = obs.now
    upcoming = next_fire_times(
        schedule, after=max(after, last or after), count=NEXT_TIMES_SHOWN, bounds=bounds,
        runs_so_far=total_runs,
    )
    view = _status_view(obs, spec, new_children, upcoming, revokes)
    for key, value in view.items():
        if status.get(key) != value:
            patch[key] = value
    # Ready may have been set False by the controller (a write the API server refused):
    # once a step goes through, the planner's own view replaces it.
    ready = get_condition(status.get("conditions") or [], "Ready")
    not_ready = ready is None or ready.get("status") != "True"
    if patch or status.get("observedGeneration") != obs.generation or not_ready:
        if spec.suspend:
            reason, message = "Suspended", "suspended: no runs are created"
        elif upcoming:
            reason, message = "Scheduled", f"next run at {format_time(upcoming[0])}"
        else:
            reason, message = "Finished", "no further runs: the schedule's bounds are reached"
        conditions = _conditions(obs, ready=True, stalled=False, reason=reason, message=message)
        if conditions != list(status.get("conditions") or []) or patch:
            patch["conditions"] = conditions
        patch["observedGeneration"] = obs.generation

    # Forbid/Replace with a run active: look again at the fire time itself (a child that
    # finishes meanwhile wakes us sooner), not create_ahead before it.
    lead = timedelta(0) if _overlap_decided_at_fire_time(spec, active) else cfg.create_ahead
    wake = decision.next_time - lead + WAKE_SLACK if decision.next_time else None
    return PeriodicStep(
        create=tuple(creates),
        revoke=tuple(revokes),
        delete=tuple(deletes),
        status=patch or None,
        notices=tuple(notices),
        wake_at=wake,
    )


def _missed_count(
    schedule: Schedule,
    decision: RunDecision,
    obs: PeriodicObserved,
    spec: PeriodicTaskSpec,
    bounds: Bounds,
    now: datetime,
    last: datetime | None,
    runs_so_far: int,
) -> int:
    """Due times that will never run: all of them in the window, deadline or not, but the
    one that runs now (CronJob counts only those inside the deadline; users want all)."""
    if decision.latest_due is None:
        return 0
    if spec.starting_deadline_seconds is None:
        return decision.missed
    everything = decide_run(
        schedule, last_schedule_time=last, created=obs.created, now=now,
        starting_deadline_seconds=None, bounds=bounds, runs_so_far=runs_so_far,
    )
    return everything.missed + (1 if decision.fire_time is None else 0)


def _status_view(
    obs: PeriodicObserved,
    spec: PeriodicTaskSpec,
    children: Sequence[Child],
    upcoming: Sequence[datetime],
    revoking: Sequence[str],
) -> dict[str, Any]:
    ordered = sorted(children, key=lambda c: (c.scheduled_time, c.name))
    active = [
        {"name": c.name, "scheduledTime": format_time(c.scheduled_time)}
        for c in ordered
        if not c.finished and not c.revoke_requested and c.name not in revoking
    ]
    recent = [
        {"name": c.name, "scheduledTime": format_time(c.scheduled_time), "phase": c.shown_phase}
        for c in ordered
    ][-RECENT_RUNS_KEPT:]
    view: dict[str, Any] = {
        "schedule": spec.schedule.description,
        "nextScheduleTimes": [format_time(t) for t in upcoming],
        "active": active,
        "recentRuns": recent,
    }
    # From every child known now, deleted by the history limit or not, and never older
    # than what status already says.
    succeeded = [c.scheduled_time for c in obs.children if c.phase == Phase.SUCCEEDED.value]
    if obs.status.get("lastSuccessfulTime"):
        succeeded.append(parse_time(str(obs.status["lastSuccessfulTime"])))
    if succeeded:
        view["lastSuccessfulTime"] = format_time(max(succeeded))
    return view


def _beyond_history(spec: PeriodicTaskSpec, children: Sequence[Child]) -> tuple[str, ...]:
    ordered = sorted(children, key=lambda c: (c.scheduled_time, c.name))
    succeeded = [c for c in ordered if c.phase == Phase.SUCCEEDED.value]
    failed = [c for c in ordered if c.finished and c.phase != Phase.SUCCEEDED.value]
    doomed = succeeded[: max(len(succeeded) - spec.successful_runs_history_limit, 0)]
    doomed += failed[: max(len(failed) - spec.failed_runs_history_limit, 0)]
    return tuple(c.name for c in doomed)


def _invalid(obs: PeriodicObserved, error: InvalidSpec) -> PeriodicStep:
    status = obs.status
    message = f"invalid spec: {error}"[:2048]
    stalled = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Stalled"), None
    )
    if (
        stalled is not None
        and stalled.get("status") == "True"
        and stalled.get("message") == message
        and status.get("observedGeneration") == obs.generation
    ):
        return PeriodicStep()
    patch: dict[str, Any] = {
        "observedGeneration": obs.generation,
        "conditions": _conditions(obs, ready=False, stalled=True, reason="InvalidSpec",
                                  message=message),
    }
    if "schedule" in status:
        patch["schedule"] = None  # no schedule runs: the SCHEDULE column goes blank
    return PeriodicStep(status=patch, notices=(PeriodicNotice("Warning", "InvalidSpec", message),))


# ---- what the controller needs when a step cannot be carried out ---------------------------

# The operator's own header on every run, and the ScheduledTask schema's header limit: a
# child gets the parent's headers plus this one, and must still fit.
PERIODIC_TASK_HEADER = "periodic_task_name"
CHILD_HEADERS_MAX = 32
OWNER_KIND = "PeriodicTask"
OWNER_GROUP = "celeryoperator.dev"


def child_headers(headers: Mapping[str, str], parent: str) -> dict[str, str]:
    """The run's message headers: the parent's, plus the name of the parent.

    Raises ValueError (naming the field) when they would not fit a ScheduledTask, rather
    than sending a create the API server is bound to refuse."""
    merged = {**headers, PERIODIC_TASK_HEADER: parent}
    if len(merged) > CHILD_HEADERS_MAX:
        raise ValueError(
            f"spec.task.headers: at most {CHILD_HEADERS_MAX - 1} headers, not {len(headers)}: "
            f"every run gets {PERIODIC_TASK_HEADER!r} too, and a ScheduledTask takes "
            f"{CHILD_HEADERS_MAX}"
        )
    return merged


def run_spec(
    raw: Mapping[str, Any], spec: PeriodicTaskSpec, parent: str, order: ChildOrder
) -> dict[str, Any]:
    """The spec of one run's ScheduledTask: the parent's task (as written, plus the
    periodic_task_name header), due at its fire time (a run-now run: at once), with the
    parent's expires and app. Raises ValueError as child_headers does."""
    task = dict(raw.get("task") or {})
    task["headers"] = child_headers(task.get("headers") or {}, parent)
    child: dict[str, Any] = {"task": task}
    if not order.manual:
        child["eta"] = format_time(order.scheduled_time, fraction=True)
    # Seconds count from the run's due time, its fire time: Celery beat's meaning.
    expires = render_expires(spec.expires_seconds, spec.expires_at)
    if expires is not None:
        child["expires"] = expires
    if isinstance(raw.get("app"), Mapping):
        child["app"] = dict(raw["app"])  # runs use their schedule's app
    return child


def controller_uid(metadata: Mapping[str, Any]) -> str | None:
    """The uid of the PeriodicTask that controls an object (its ownerReference with
    controller: true), or None. A child is recognised by this, never by its label alone:
    anyone who may create a ScheduledTask may write any label on it."""
    for ref in metadata.get("ownerReferences") or ():
        if not isinstance(ref, Mapping) or ref.get("controller") is not True:
            continue
        group = str(ref.get("apiVersion") or "").split("/", 1)[0]
        if ref.get("kind") == OWNER_KIND and group == OWNER_GROUP and ref.get("uid"):
            return str(ref["uid"])
    return None


def failed_step_conditions(
    status: Mapping[str, Any], *, generation: int, now: datetime, reason: str, message: str,
) -> list[dict[str, Any]] | None:
    """Conditions saying a step was refused (Ready=False, Stalled=True, the API server's
    message); None when status says exactly that already (nothing to write)."""
    current = list(status.get("conditions") or [])
    ready = get_condition(current, "Ready")
    if (
        ready is not None and ready.get("status") == "False"
        and ready.get("reason") == reason and ready.get("message") == message
    ):
        return None
    conditions = set_condition(current, type="Ready", status="False", reason=reason,
                               message=message, generation=generation, now=now)
    return set_condition(conditions, type="Stalled", status="True", reason=reason,
                         message=message, generation=generation, now=now)


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff: `initial` after the first failure, doubling, at most
    `cap`."""

    initial: timedelta
    cap: timedelta

    def delay(self, failures: int) -> timedelta:
        if failures <= 0:
            return timedelta(0)
        doublings = min(failures - 1, 40)  # 2**40 times any initial is past every cap
        grown: timedelta = self.initial * (2 ** doublings)
        return min(grown, self.cap)


# Refused by the API server (400/403/422): it will not change until someone acts.
REJECTED_BACKOFF = Backoff(initial=timedelta(seconds=5), cap=timedelta(minutes=10))
# Anything else (API server unreachable, 5xx): retried sooner, and still never in a loop.
ERROR_BACKOFF = Backoff(initial=timedelta(seconds=1), cap=timedelta(minutes=1))
# Someone wrote first: the first retry is at once (from the object as it is now), the
# next ones after delay(conflicts - 1).
CONFLICT_BACKOFF = Backoff(initial=timedelta(milliseconds=500), cap=timedelta(seconds=30))
