"""revoke and result: one ScheduledTask (a PeriodicTask's result is its last run's)."""

from __future__ import annotations

import json
from typing import Any

from celery_operator.api import (
    FINISHED_PHASES,
    PERIODIC_PLURAL,
    SCHEDULED_PLURAL,
    Phase,
)
from celery_operator.kube.client import Rejected
from celery_operator.scheduling.task_model import RESULT_LIMIT

from .history import IN_STATUS, last_finished, runs_in_status
from .output import Refused, Shown
from .target import Session, Target, find

CONFLICT = 409
ATTEMPTS = 3  # the task moved on between our read and our write: read it again


def revoke(session: Session, ref: str, *, terminate: bool, signal: str) -> Shown:
    """spec.revoke, written only onto the state we judged (a resourceVersion precondition):
    a task that finishes meanwhile is reported as finished, not "revoked"."""
    request = {"terminate": terminate, "signal": signal}
    for attempt in range(1, ATTEMPTS + 1):
        target = find(session, ref)
        if target.plural == PERIODIC_PLURAL:
            raise Refused(f"{target.ref} is a PeriodicTask: revoke applies to ScheduledTasks "
                          f"(one run); to stop its schedule, kubectl celery suspend "
                          f"{target.name}")
        phase = str(target.status.get("phase") or "")
        if phase in FINISHED_PHASES:
            when = target.status.get("completionTime")
            raise Refused(f"{target.ref} had already finished ({phase}"
                          f"{f' at {when}' if when else ''}): nothing to revoke")
        data = {**target.identity, "phase": phase or None, "revoke": request}
        if target.spec.get("revoke") == request:
            return Shown(f"{target.ref}: revoke already requested", {**data, "changed": False})
        try:
            session.objects.patch(
                SCHEDULED_PLURAL, target.namespace, target.name, {"spec": {"revoke": request}},
                resource_version=str(target.obj["metadata"]["resourceVersion"]),
            )
        except Rejected as exc:
            if exc.status == CONFLICT and attempt < ATTEMPTS:
                continue
            raise
        how = f" (terminate with {signal})" if terminate else ""
        return Shown(f"{target.ref} revoke requested{how}", {**data, "changed": True})
    raise AssertionError("unreachable: the last attempt returns or raises")


def result(session: Session, ref: str) -> Shown:
    target = find(session, ref)
    note = None
    if target.plural == PERIODIC_PLURAL:
        run = last_finished([*session.objects.runs(target.obj), *runs_in_status(target.obj)])
        if run is None:
            raise Refused(f"{target.ref}: no run has finished yet")
        parent = target.ref
        target = Target(SCHEDULED_PLURAL, run)
        shown = (f"{run['metadata']['name']} (kept in its status.runs)" if run.get(IN_STATUS)
                 else target.ref)
        note = f"{parent}: last finished run {shown}"
    return _outcome(target, note)


def _outcome(target: Target, note: str | None) -> Shown:
    status = target.status
    phase = str(status.get("phase") or "")
    if phase not in FINISHED_PHASES:
        raise Refused(f"{target.ref} is {phase or 'not dispatched yet'}: no result yet")
    data: dict[str, Any] = {**target.identity, "phase": phase}
    warning = note
    if phase == Phase.SUCCEEDED:
        value = status.get("result")
        data["result"] = value
        truncated = bool(status.get("resultTruncated"))
        if truncated:
            data["resultTruncated"] = True
            cut = (f"the result is cut to its first {RESULT_LIMIT} bytes of JSON (as the "
                   "operator keeps it)")
            warning = f"{note}; {cut}" if note else f"{target.ref}: {cut}"
            text = str(value)
        else:
            text = json.dumps(value, indent=2, ensure_ascii=False)
        return Shown(text, data, warning)
    error = status.get("error")
    if not error:
        raise Refused(f"{target.ref} ended {phase}: it has no result")
    data["error"] = error
    text = error.get("traceback") or f"{error.get('type')}: {error.get('message')}"
    return Shown(text.rstrip("\n"), data, warning or f"{target.ref} ended {phase}")
