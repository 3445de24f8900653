"""Table rows from raw objects, leniently: a broken spec or a missing status still makes a
row (with blanks), never an error."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from celery_operator.api import Phase, parse_time

NO_PHASE = "Pending"  # no status yet: the operator has not seen it


def _time(raw: Any) -> datetime | None:
    return _parsed(raw) if isinstance(raw, str) and raw else None


@lru_cache(maxsize=1 << 16)  # a burst of objects shares its timestamps: parse each once
def _parsed(text: str) -> datetime | None:
    try:
        return parse_time(text)
    except ValueError:
        return None


def _text(raw: Any) -> str:
    return raw if isinstance(raw, str) else ""


def _mapping(raw: Any) -> Mapping[str, Any]:
    return raw if isinstance(raw, Mapping) else {}


def app_of(spec: Mapping[str, Any]) -> str:
    """`CeleryApp/billing`, `ClusterCeleryApp/shared`, or "" (the default app)."""
    app = _mapping(spec.get("app"))
    name = _text(app.get("name"))
    return f"{_text(app.get('kind')) or 'CeleryApp'}/{name}" if name else ""


@dataclass(frozen=True)
class TaskRow:
    namespace: str
    name: str
    task: str
    queue: str
    phase: str
    due: datetime | None
    attempts: int
    worker: str
    created: datetime | None
    completed: datetime | None
    error: str
    app: str

    @property
    def failed(self) -> bool:
        return self.phase in (Phase.FAILED, Phase.EXPIRED, Phase.INVALID)


def task_row(obj: Mapping[str, Any]) -> TaskRow:
    meta, spec, status = (_mapping(obj.get(part)) for part in ("metadata", "spec", "status"))
    task = _mapping(spec.get("task"))
    attempt = status.get("attempt")
    return TaskRow(
        namespace=_text(meta.get("namespace")), name=_text(meta.get("name")),
        task=_text(task.get("name")), queue=_text(task.get("queue")),
        phase=_text(status.get("phase")) or NO_PHASE, due=_time(status.get("dueTime")),
        attempts=attempt if isinstance(attempt, int) else 0,
        worker=_text(status.get("worker")), created=_time(meta.get("creationTimestamp")),
        completed=_time(status.get("completionTime")),
        error=_text(_mapping(status.get("error")).get("type")), app=app_of(spec),
    )


@dataclass(frozen=True)
class ScheduleRow:
    namespace: str
    name: str
    task: str
    suspended: bool
    next_time: datetime | None
    last_success: datetime | None
    missed: int
    skipped: int
    total: int
    app: str


def _count(raw: Any) -> int:
    return raw if isinstance(raw, int) else 0


def schedule_row(obj: Mapping[str, Any]) -> ScheduleRow:
    meta, spec, status = (_mapping(obj.get(part)) for part in ("metadata", "spec", "status"))
    upcoming = status.get("nextScheduleTimes")
    first = upcoming[0] if isinstance(upcoming, list) and upcoming else None
    return ScheduleRow(
        namespace=_text(meta.get("namespace")), name=_text(meta.get("name")),
        task=_text(_mapping(spec.get("task")).get("name")), suspended=spec.get("suspend") is True,
        next_time=_time(first), last_success=_time(status.get("lastSuccessfulTime")),
        missed=_count(status.get("missedRuns")), skipped=_count(status.get("skippedRuns")),
        total=_count(status.get("totalRuns")), app=app_of(spec),
    )
