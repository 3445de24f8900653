"""What the pages show, from the cached rows: the overview's figures and the task table's
filter, sort and page (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from celery_operator.api import FINISHED_PHASES

from .rows import ScheduleRow, TaskRow

SOON = timedelta(hours=1)
NEVER = datetime.max.replace(tzinfo=UTC)
LISTED = 10  # rows in each overview list
PER_PAGE = 50
SORTS = ("namespace", "name", "task", "queue", "phase", "due", "attempts", "worker", "age")


@dataclass(frozen=True)
class Overview:
    by_namespace: dict[str, Counter[str]]
    by_app: dict[str, Counter[str]]
    due_soon: list[TaskRow]
    due_soon_count: int
    failures: list[TaskRow]
    missed: list[ScheduleRow]


def overview(tasks: Sequence[TaskRow], schedules: Sequence[ScheduleRow],
             now: datetime) -> Overview:
    by_namespace: dict[str, Counter[str]] = {}
    by_app: dict[str, Counter[str]] = {}
    soon: list[TaskRow] = []
    for row in tasks:
        by_namespace.setdefault(row.namespace, Counter())[row.phase] += 1
        by_app.setdefault(row.app or "default", Counter())[row.phase] += 1
        if (row.phase not in FINISHED_PHASES and row.due is not None
                and row.due <= now + SOON):
            soon.append(row)
    soon.sort(key=lambda r: (r.due, r.namespace, r.name))
    failures = sorted((r for r in tasks if r.failed),
                      key=lambda r: (r.completed or r.created or now), reverse=True)
    missed = sorted((s for s in schedules if s.missed),
                    key=lambda s: (-s.missed, s.namespace, s.name))
    return Overview(dict(sorted(by_namespace.items())), dict(sorted(by_app.items())),
                    soon[:LISTED], len(soon), failures[:LISTED], missed[:LISTED])


@dataclass(frozen=True)
class TableQuery:
    text: str = ""  # in the name, task or queue
    namespace: str = ""
    phase: str = ""
    sort: str = "due"
    descending: bool = False
    page: int = 1

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> TableQuery:
        """From a page's query string, leniently (an unknown sort or page is the default)."""
        sort = params.get("sort", "due")
        try:
            page = max(1, int(params.get("page", "1")))
        except ValueError:
            page = 1
        return cls(text=params.get("q", "").strip(), namespace=params.get("namespace", ""),
                   phase=params.get("phase", ""), sort=sort if sort in SORTS else "due",
                   descending=params.get("order") == "desc", page=page)


@dataclass(frozen=True)
class Page:
    rows: list[TaskRow]
    total: int  # rows matching the filter
    page: int
    pages: int


def _sort_key(sort: str) -> Any:
    def key(row: TaskRow) -> Any:
        if sort == "due":  # unknown due times last
            return (row.due is None, row.due or NEVER, row.namespace, row.name)
        if sort == "age":  # youngest first, as kubectl's AGE ascending reads
            return (row.created is None, -(row.created or NEVER).timestamp(), row.name)
        return (getattr(row, sort), row.namespace, row.name)

    return key


def select(rows: Sequence[TaskRow], query: TableQuery, per_page: int = PER_PAGE) -> Page:
    text = query.text.lower()
    chosen = [r for r in rows
              if (not query.namespace or r.namespace == query.namespace)
              and (not query.phase or r.phase == query.phase)
              and (not text or text in r.name.lower() or text in r.task.lower()
                   or text in r.queue.lower())]
    chosen.sort(key=_sort_key(query.sort), reverse=query.descending)
    pages = max(1, -(-len(chosen) // per_page))
    page = min(query.page, pages)
    return Page(chosen[(page - 1) * per_page:page * per_page], len(chosen), page, pages)
