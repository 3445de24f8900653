"""Celery's database result backend (`db+postgresql://…`, table celery_taskmeta) and
django-celery-results (`django-db+postgresql://…`, table django_celery_results_taskresult),
read with one `SELECT … WHERE task_id = ANY(:ids)` per batch; neither Celery's models nor
Django are needed.

Celery's table holds the result column as the serializer's bytes (JSON); a row from
before Celery 5.x's fix holds a pickle and is quarantined like any other non-JSON
record. django-celery-results holds the serialized text with its content type beside
it. The optional columns (worker, retries: Celery's result_extended) are read when the
table has them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

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
        self._select: sa.Select[Any] | None = None
        self._marks = IdTable(self._engine, REVOKED_TABLE)

    def _statement(self, conn: sa.Connection) -> sa.Select[Any]:
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
            table = sa.table(self.layout.table, *(sa.column(n) for n in names))
            # One array parameter (= ANY): the statement stays the same size whatever
            # the batch, where IN (…) would send (and make psycopg parse) 1,000 of them.
            ids = sa.bindparam("ids", type_=ARRAY(sa.String))
            self._select = sa.select(*table.c).where(table.c.task_id == sa.any_(ids))
        return self._select

    def fetch(self, task_ids: Sequence[str]) -> Mapping[str, Any]:
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(self._statement(conn), {"ids": list(task_ids)})
                return {row.task_id: row._mapping for row in rows}
        except ResultBackendError:
            raise
        except Exception as exc:
            self._select = None  # the table may have changed (dropped, migrated)
            raise ResultBackendError(one_line(self._url, exc)) from exc

    def parse(self, task_id: str, raw: Any) -> TaskState:
        return state_from_meta(task_id, row_meta(self.layout, raw))

    def check(self) -> None:
        self.fetch([PROBE_ID])

    def mark_revoked(self, task_id: str) -> None:
        try:
            self._marks.put(task_id, REVOKED_TTL_SECONDS)
        except Exception as exc:
            raise ResultBackendError(one_line(self._url, exc)) from exc

    def close(self) -> None:
        self._engine.dispose()
