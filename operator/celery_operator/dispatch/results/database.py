"""Celery's database result backend (`db+postgresql://…`, table celery_taskmeta) and
django-celery-results (`django-db+postgresql://…`, table django_celery_results_taskresult),
read with one SELECT per batch of ids; neither Celery's models nor Django are needed.

The SELECT sends back only rows that changed since this reader last saw them (their
status or date_done differs: every write of Celery's and of django-celery-results sets
date_done) and the ids that have no row; an id it sees unchanged keeps the row read
before. A poll of tasks that are running then moves and decodes nothing.

Celery's table holds the result column as the serializer's bytes (JSON); a row from
before Celery 5.x's fix holds a pickle and is quarantined like any other non-JSON
record. django-celery-results holds the serialized text with its content type beside
it. The optional columns (worker, retries: Celery's result_extended) are read when the
table has them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from celery_operator.api.celery_state import TaskState
from celery_operator.config import redact_url
from celery_operator.dispatch.results.base import PROBE_ID, ResultBackendError
from celery_operator.dispatch.results.meta import Unreadable, decode_json, state_from_meta
from celery_operator.dispatch.revocations import REVOKED_TTL_SECONDS
from celery_operator.dispatch.sqlstore import (
    DJANGO_PREFIX,
    REVOKED_TABLE,
    IdTable,
    create_engine,
    one_line,
)

JSON_CONTENT = "application/json"
# Ids whose last row is kept (bounded: forgotten wholesale when full).
SEEN_MAX = 100_000


@dataclass(frozen=True)
class Layout:
    table: str
    columns: tuple[str, ...]  # read when present (task_id and status always)
    content_type: bool  # the result column's content type is in a column beside it


CELERY = Layout(
    "celery_taskmeta",
    ("status", "result", "traceback", "date_done", "worker", "retries"),
    content_type=False,
)
DJANGO = Layout(
    "django_celery_results_taskresult",
    ("status", "result", "traceback", "date_done", "worker", "content_type"),
    content_type=True,
)


def layout_of(url: str) -> Layout:
    return DJANGO if url.lower().startswith(DJANGO_PREFIX) else CELERY


def row_meta(layout: Layout, row: Mapping[str, Any]) -> dict[str, Any]:
    """Celery's meta mapping from one row; raises Unreadable."""
    raw = row.get("result")
    if layout.content_type and raw is not None:
        kind = row.get("content_type")
        if kind != JSON_CONTENT:
            raise Unreadable(f"not JSON ({kind})")
    if isinstance(raw, memoryview):
        raw = bytes(raw)
    meta = {k: row.get(k) for k in ("status", "traceback", "date_done", "worker", "retries")}
    meta["result"] = None if raw is None else decode_json(raw)
    return meta


class DatabaseResults:
    available = True
    batch = 1000

    def __init__(self, url: str) -> None:
        self._url = url
        self.layout = layout_of(url)
        self._engine = create_engine(url)
        self._select: sa.TextClause | None = None
        # The last row seen per id, with its change mark (status, date_done as text).
        self._seen: dict[str, tuple[tuple[str, str | None], RowMapping]] = {}
        self._marks = IdTable(self._engine, REVOKED_TABLE)

    def _statement(self, conn: sa.Connection) -> sa.TextClause:
        """The SELECT for this table's columns (looked up once; again after a failure)."""
        if self._select is None:
            inspector = sa.inspect(conn)
            if not inspector.has_table(self.layout.table):
                raise ResultBackendError(
                    f"{redact_url(self._url)}: table {self.layout.table} does not exist "
                    "(the workers create it when they first store a result)"
                )
            present = {c["name"] for c in inspector.get_columns(self.layout.table)}
            names = ["task_id", *(c for c in self.layout.columns if c in present)]
            done = "t.date_done::text" if "date_done" in names else "NULL::text"
            columns = ", ".join(f"t.{n}" for n in names)
            # One JSON parameter (what was seen of each id): the statement stays the
            # same size whatever the batch, and one JSON text is far cheaper to send
            # than arrays psycopg dumps element by element. A row comes back when it is
            # new or changed; an id without a row comes back with task_id NULL (so a
            # deleted row is noticed).
            self._select = sa.text(
                f"SELECT k.id AS asked, t.task_id IS NULL AS gone, {columns}, "
                f"{done} AS done_mark "
                "FROM json_to_recordset(CAST(:seen AS json)) AS k(id text, status text, "
                f"mark text) LEFT JOIN {self.layout.table} t ON t.task_id = k.id "
                "WHERE t.task_id IS NULL OR k.status IS NULL "
                "OR t.status IS DISTINCT FROM k.status "
                f"OR {done} IS DISTINCT FROM k.mark"
            )
        return self._select

    def fetch(self, task_ids: Sequence[str]) -> Mapping[str, Any]:
        seen = [self._seen.get(task_id) for task_id in task_ids]
        params = {"seen": json.dumps([
            {"id": task_id, "status": s[0][0], "mark": s[0][1]} if s else {"id": task_id}
            for task_id, s in zip(task_ids, seen, strict=True)
        ])}
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(self._statement(conn), params).mappings().all()
        except ResultBackendError:
            raise
        except Exception as exc:
            self._select = None  # the table may have changed (dropped, migrated)
            raise ResultBackendError(one_line(self._url, exc)) from exc
        found = {task_id: s[1] for task_id, s in zip(task_ids, seen, strict=True) if s}
        for row in rows:
            task_id = row["asked"]
            if row["gone"]:
                found.pop(task_id, None)
                self._seen.pop(task_id, None)
                continue
            found[task_id] = row
            if isinstance(row["status"], str):  # no status: unreadable, read it each time
                if len(self._seen) >= SEEN_MAX:
                    self._seen.clear()  # forgotten wholesale: only costs a full re-read
                self._seen[task_id] = ((row["status"], row["done_mark"]), row)
        return found

    def parse(self, task_id: str, raw: Any) -> TaskState:
        return state_from_meta(task_id, row_meta(self.layout, raw))

    def check(self) -> None:
        self.fetch([PROBE_ID])

    def mark_revoked(self, task_id: str) -> None:
        try:
            self._marks.put(task_id, REVOKED_TTL_SECONDS)
        except Exception as exc:
            raise ResultBackendError(one_line(self._url, exc)) from exc

    def is_revoked(self, task_id: str) -> bool:
        try:
            return self._marks.has(task_id)
        except Exception as exc:
            raise ResultBackendError(one_line(self._url, exc)) from exc

    def close(self) -> None:
        self._engine.dispose()
