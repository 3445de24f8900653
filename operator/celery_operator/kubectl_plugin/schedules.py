"""next, run, suspend, resume: a PeriodicTask's schedule (`next` also shows a
ScheduledTask's due time)."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from celery_operator.api import FINISHED_PHASES, PERIODIC_PLURAL, format_time
from celery_operator.scheduling.periodic_plan import RUN_REQUEST_ANNOTATION, child_name

from .history import run_history, shown_history
from .output import Refused, Shown, local_time, table, until, utc, zone_name
from .target import Session, Target, find
from .upcoming import Upcoming, due_time, periodic_spec, periodic_upcoming


def _time_table(times: list[datetime], now: datetime, local: tzinfo,
                schedule_zone: str | None) -> str:
    """UTC, the user's local time, and a cron schedule's own zone when it is another."""
    local_name = zone_name(local, now)
    zones = [local]
    headers = ["UTC", f"LOCAL ({local_name})"]
    if schedule_zone is not None and schedule_zone not in ("UTC", local_name):
        zones.append(ZoneInfo(schedule_zone))
        headers.append(schedule_zone)
    rows = [[format_time(t), *(local_time(t, zone) for zone in zones), until(t, now)]
            for t in times]
    return table([*headers, "IN"], rows)


def _time_data(moment: datetime, local: tzinfo) -> dict[str, str]:
    return {"utc": format_time(moment), "local": moment.astimezone(local).isoformat()}


def next_times(session: Session, ref: str, count: int) -> Shown:
    target = find(session, ref)
    now = session.clock()
    if target.plural != PERIODIC_PLURAL:
        return _due(session, target, now)
    upcoming = periodic_upcoming(target.obj, now, count)
    return _shown_upcoming(target, upcoming, now, session.zone)


def _shown_upcoming(target: Target, upcoming: Upcoming, now: datetime, local: tzinfo) -> Shown:
    lines = [f"{target.ref}: {upcoming.schedule}"]
    if upcoming.times:
        lines.append(_time_table(list(upcoming.times), now, local, upcoming.zone))
    if upcoming.note:
        lines.append(("no further runs: " if not upcoming.times else "then no more runs: ")
                     + upcoming.note)
    data: dict[str, Any] = {
        **target.identity, "schedule": upcoming.schedule,
        "suspended": bool(target.spec.get("suspend")),
        "next": [_time_data(t, local) for t in upcoming.times],
    }
    if upcoming.note:
        data["note"] = upcoming.note
    return Shown("\n".join(lines), data)


def _due(session: Session, target: Target, now: datetime) -> Shown:
    due = due_time(target.obj)
    phase = str(target.status.get("phase") or "Scheduled")
    finished = phase in FINISHED_PHASES
    head = f"{target.ref}: {phase}" + (", finished" if finished else "")
    lines = [head, _time_table([due], now, session.zone, None)]
    data = {**target.identity, "phase": phase, "due": _time_data(due, session.zone)}
    return Shown("\n".join(lines), data)


def _periodic(target: Target, verb: str, alternative: str) -> None:
    if target.plural != PERIODIC_PLURAL:
        raise Refused(f"{target.ref} is a ScheduledTask: {verb} applies to PeriodicTasks; "
                      f"{alternative}")


def run_now(session: Session, ref: str) -> Shown:
    """The run-request annotation the engine honours: one extra run, now. The engine runs
    it while the schedule is suspended too (suspend stops only scheduled runs)."""
    target = find(session, ref)
    if target.plural != PERIODIC_PLURAL:  # its due time is read only from a ScheduledTask
        _periodic(target, "run", "a ScheduledTask runs once, at its due time "
                                 f"({utc(due_time(target.obj))})")
    spec = periodic_spec(target.obj)  # the engine runs nothing for an invalid spec
    requested = session.clock()
    stamp = format_time(requested, fraction=True)
    session.objects.annotate(PERIODIC_PLURAL, target.namespace, target.name,
                             RUN_REQUEST_ANNOTATION, stamp)
    run = child_name(target.name, requested, manual=True)
    where = (f"run {run} in its status.runs" if spec.run_objects == "Never"
             else f"scheduledtask/{run}")
    lines = [f"{target.ref}: run requested at {format_time(requested)}; it runs as {where}"]
    if spec.suspend:
        lines.append(f"{target.ref} is suspended: this one run goes ahead, "
                     "its scheduled runs stay paused")
    data = {**target.identity, "requestedAt": stamp, "run": run, "suspended": spec.suspend}
    return Shown("\n".join(lines), data)


def set_suspend(session: Session, ref: str, suspend: bool) -> Shown:
    target = find(session, ref)
    verb = "suspend" if suspend else "resume"
    _periodic(target, verb, f"to cancel it, kubectl celery revoke {target.name}")
    changed = bool(target.spec.get("suspend")) != suspend
    if changed:
        session.objects.patch(PERIODIC_PLURAL, target.namespace, target.name,
                              {"spec": {"suspend": suspend}})
        text = f"{target.ref} {'suspended' if suspend else 'resumed'}"
    else:
        text = f"{target.ref} is already {'suspended' if suspend else 'running on schedule'}"
    data = {**target.identity, "suspend": suspend, "changed": changed}
    return Shown(text, data)


def history(session: Session, ref: str, limit: int) -> Shown:
    target = find(session, ref)
    _periodic(target, "history", f"kubectl celery result {target.name} shows its outcome")
    runs = session.objects.runs(target.obj)
    return shown_history(target.obj, run_history(target.obj, runs, limit))
