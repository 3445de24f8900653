"""A PeriodicTask's recent runs: when each was due, its outcome, how late it started.

Pure: status.recentRuns (which outlives the runs the history limits delete) joined with
the runs that still exist (their own status is the fresher one and says when they ran).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery_operator.api import FINISHED_PHASES, parse_time
from celery_operator.api.names import MANUAL_LABEL, SCHEDULED_TIME_ANNOTATION
from celery_operator.api.status import RUN_PENDING

from .output import NONE, Shown, span, table, utc

DEFAULT_LIMIT = 10


@dataclass(frozen=True)
class RunRow:
    name: str
    scheduled: datetime | None
    outcome: str
    manual: bool
    started: datetime | None = None
    finished: datetime | None = None

    @property
    def lateness(self) -> str:
        """How long after its nominal time a worker started it."""
        if self.started is None or self.scheduled is None:
            return NONE
        return span(self.started - self.scheduled)

    @property
    def duration(self) -> str:
        if self.started is None or self.finished is None:
            return NONE
        return span(self.finished - self.started)


def _time(raw: Any) -> datetime | None:
    try:
        return parse_time(str(raw)) if raw else None
    except ValueError:
        return None


def _scheduled(run: Mapping[str, Any]) -> datetime | None:
    return _time(((run.get("metadata") or {}).get("annotations") or {})
                 .get(SCHEDULED_TIME_ANNOTATION))


# Set on a run shaped from status.runs (it is no object: nothing to get or patch).
IN_STATUS = "keptInStatus"


def runs_in_status(periodic: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The runs a PeriodicTask keeps in status.runs (spec.runObjects: Never), shaped as
    the ScheduledTasks they would be: name, namespace, fire time, manual label, status;
    marked IN_STATUS."""
    meta = periodic.get("metadata") or {}
    runs = (periodic.get("status") or {}).get("runs")
    shaped: list[dict[str, Any]] = []
    for name, item in (runs.items() if isinstance(runs, Mapping) else ()):
        if not isinstance(item, Mapping):
            continue
        shaped.append({
            IN_STATUS: True,
            "kind": "ScheduledTask",
            "metadata": {
                "name": name, "namespace": meta.get("namespace"),
                "labels": {MANUAL_LABEL: "true"} if item.get("manual") is True else {},
                "annotations": {SCHEDULED_TIME_ANNOTATION: item.get("scheduledTime")},
            },
            "spec": (periodic.get("spec") or {}),
            "status": dict(item.get("status") or {}),
        })
    return shaped


def last_finished(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The run with the latest nominal time among those that finished."""
    done = sorted(((when, str(r["metadata"]["name"]), r) for r in runs
                   if (r.get("status") or {}).get("phase") in FINISHED_PHASES
                   and (when := _scheduled(r)) is not None), key=lambda e: e[:2])
    return dict(done[-1][2]) if done else None


def run_history(periodic: Mapping[str, Any], runs: Sequence[Mapping[str, Any]],
                limit: int = DEFAULT_LIMIT) -> list[RunRow]:
    """The last `limit` runs, oldest first."""
    parent = str(periodic["metadata"]["name"])
    rows: dict[str, RunRow] = {}
    for recent in (periodic.get("status") or {}).get("recentRuns") or []:
        name = str(recent.get("name"))
        rows[name] = RunRow(name, _time(recent.get("scheduledTime")),
                            str(recent.get("phase") or RUN_PENDING),
                            manual=name.startswith(f"{parent}-manual-"))
    for run in [*runs, *runs_in_status(periodic)]:
        meta = run.get("metadata") or {}
        status = run.get("status") or {}
        name = str(meta.get("name"))
        rows[name] = RunRow(
            name, _scheduled(run), str(status.get("phase") or RUN_PENDING),
            manual=(meta.get("labels") or {}).get(MANUAL_LABEL) == "true",
            started=_time(status.get("startTime")), finished=_time(status.get("completionTime")),
        )
    ordered = sorted(rows.values(), key=lambda r: (r.scheduled is None, r.scheduled, r.name))
    return ordered[-limit:] if limit > 0 else []


def shown_history(periodic: Mapping[str, Any], rows: Sequence[RunRow]) -> Shown:
    meta = periodic["metadata"]
    status = periodic.get("status") or {}
    counts = {key: int(status.get(key) or 0) for key in ("totalRuns", "missedRuns", "skippedRuns")}
    body = table(["RUN", "SCHEDULED", "OUTCOME", "LATE", "DURATION"], [
        [r.name, utc(r.scheduled), r.outcome, r.lateness,
         r.duration] for r in rows
    ]) if rows else "no runs yet"
    summary = (f"{counts['totalRuns']} run(s) made, {counts['missedRuns']} missed, "
               f"{counts['skippedRuns']} skipped; last success: "
               f"{status.get('lastSuccessfulTime') or 'never'}")
    data = {
        "kind": "PeriodicTask", "namespace": meta.get("namespace"), "name": meta.get("name"),
        **counts, "lastSuccessfulTime": status.get("lastSuccessfulTime"),
        "runs": [{"name": r.name, "scheduledTime": utc(r.scheduled) if r.scheduled else None,
                  "outcome": r.outcome, "manual": r.manual,
                  "startTime": utc(r.started) if r.started else None,
                  "lateness": r.lateness if r.started else None,
                  "duration": r.duration if r.finished else None} for r in rows],
    }
    return Shown(f"{body}\n{summary}", data)
