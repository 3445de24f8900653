"""Celery's database result backend (`db+postgresql://…`, table celery_taskmeta) and
django-celery-results (`django-db+postgresql://…`, table django_celery_results_taskresult),
read with one SELECT per batch of ids; neither Celery's models nor Django are needed.

The SELECT sends back only rows that changed since the reader last saw them and the ids
whose row went away: each id goes with the version of the row the reader holds (the row's
xmin, the transaction that wrote it: every UPDATE or re-INSERT makes a new row version
with the writer's transaction id), so a poll of tasks that are running moves and decodes
nothing. What the reader holds per id is also that id's part of the next SELECT's
parameter, made once when the row changes rather than at every poll.

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
from celery_operator.dispatch.revocations import REVOKED_TTL_SECONDS, SENT_TTL_SECONDS, sent_id
from celery_operator.dispatch.sqlstore import (
    DJANGO_PREFIX,
    REVOKED_TABLE,
    SENT_TABLE,
    IdTable,
    create_engine,
    one_line,
)

JSON_CONTENT = "application/json"


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


def row_meta(layout: Layout, row: Mapping[Any, Any]) -> dict[str, Any]:
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


@dataclass(frozen=True)
class Row:
    """A row as the reader holds it: the row and its id's part of the next SELECT."""

    asked: str  # {"id": …, "v": version} as JSON
    row: RowMapping


class DatabaseResults:
    available = True
    # One SELECT per poll of up to this many ids: each SELECT also costs PostgreSQL a
    # plan and, on a small table, a scan of it (a hash join), whatever its size.
    batch = 10_000

    def __init__(self, url: str) -> None:
        self._url = url
        self.layout = layout_of(url)
        self._engine = create_engine(url)
        self._select: sa.TextClause | None = None
        self._marks = IdTable(self._engine, REVOKED_TABLE)
        self._sent = IdTable(self._engine, SENT_TABLE)

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
            columns = ", ".join(f"t.{n}" for n in names)
            # One JSON parameter (each id and the version the reader holds): the
            # statement stays the same size whatever the batch, and one JSON text is far
            # cheaper to send than arrays psycopg dumps element by element. A row comes
            # back when it is new or changed; an id the reader holds a row for comes
            # back with task_id NULL when that row is gone (deleted).
            self._select = sa.text(
                f"SELECT k.id AS asked, t.task_id IS NULL AS gone, {columns}, "
                "t.xmin::text AS version "
                "FROM json_to_recordset(CAST(:asked AS json)) AS k(id text, v text) "
                f"LEFT JOIN {self.layout.table} t ON t.task_id = k.id "
                "WHERE (t.task_id IS NULL AND k.v IS NOT NULL) "
                "OR (t.task_id IS NOT NULL AND (k.v IS NULL OR t.xmin::text <> k.v))"
            )
        return self._select

    def fetch(self, task_ids: Sequence[str], seen: Mapping[str, Any]) -> Mapping[str, Any]:
        parts, unseen = [], []
        for task_id in task_ids:
            held = seen.get(task_id)
            if isinstance(held, Row):
                parts.append(held.asked)
            else:
                unseen.append({"id": task_id})
        if unseen:
            parts.append(json.dumps(unseen)[1:-1])  # one encoder call for all of them
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(
                    self._statement(conn), {"asked": f"[{','.join(parts)}]"}
                ).mappings().all()
        except ResultBackendError:
            raise
        except Exception as exc:
            self._select = None  # the table may have changed (dropped, migrated)
            raise ResultBackendError(one_line(self._url, exc)) from exc
        return {
            row["asked"]: None if row["gone"] else Row(
                json.dumps({"id": row["asked"], "v": row["version"]}), row
            )
            for row in rows
        }

    def parse(self, task_id: str, raw: Any) -> TaskState:
        assert isinstance(raw, Row)
        return state_from_meta(task_id, row_meta(self.layout, raw.row))

    def check(self) -> None:
        self.fetch([PROBE_ID], {})

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

    def mark_sent(self, task_id: str, run_id: str) -> bool:
        try:
            self._sent.put(sent_id(task_id, run_id), SENT_TTL_SECONDS)
        except Exception as exc:
            raise ResultBackendError(one_line(self._url, exc)) from exc
        return True

    def sent(self, task_ids: Sequence[str], run_id: str) -> set[str]:
        try:
            present = self._sent.present([sent_id(i, run_id) for i in task_ids])
        except Exception as exc:
            raise ResultBackendError(one_line(self._url, exc)) from exc
        return {i for i in task_ids if sent_id(i, run_id) in present}

    def close(self) -> None:
        self._engine.dispose()
