"""Scenario 8 — result-read cost per result backend: one poll of N tracked tasks.

Twice per backend: N finished tasks (the reader asks no more for an id once final) and
N running ones (STARTED records, unchanged between polls: read every poll, decoded once).
The records sit in each backend (Redis keys; Celery's celery_taskmeta and
django-celery-results' table in a PostgreSQL of this run); the operator's reader
(dispatch.results.ResultReader) reads all N ids, POLLS times. Measured per poll: the
queries it sent (Redis: MGET calls from INFO commandstats; PostgreSQL: statements seen by
SQLAlchemy) and the CPU of the reader and of the server; per 1,000 tracked tasks.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import redis as redis_lib
import sqlalchemy as sa

from celery_operator.devstack.postgresserver import PostgresServer
from celery_operator.dispatch.results import META_PREFIX, ResultReader
from celery_operator.dispatch.sqlstore import create_engine

from . import measure
from .settings import Sizes
from .stack import Stack, log

POLLS = 10
# A running task's result: what Celery stores with STARTED (track_started).
RUNNING = json.dumps({"pid": 4242, "hostname": "bench@localhost"})
DJANGO_DDL = """CREATE TABLE IF NOT EXISTS django_celery_results_taskresult (
    id serial PRIMARY KEY, task_id varchar(255) UNIQUE NOT NULL, status varchar(50),
    content_type varchar(128), content_encoding varchar(64), result text,
    date_done timestamptz, traceback text, meta text, task_args text, task_kwargs text,
    task_name varchar(255), worker varchar(100), date_created timestamptz,
    periodic_task_name varchar(255), date_started timestamptz)"""
CELERY_DDL = """CREATE TABLE IF NOT EXISTS celery_taskmeta (
    id serial PRIMARY KEY, task_id varchar(155) UNIQUE, status varchar(50), result bytea,
    date_done timestamp, traceback text, children bytea, name varchar(155), args bytea,
    kwargs bytea, worker varchar(155), retries integer, queue varchar(155), stamps bytea)"""


def run(stack: Stack, sizes: Sizes) -> dict[str, Any]:
    n = sizes.result_reads
    ids = [f"rr-{uuid.uuid4()}" for _ in range(n)]
    postgres = PostgresServer(stack.workdir / "postgres").start()
    try:
        db = f"postgresql://{postgres.user}:{quote(postgres.password, safe='')}@127.0.0.1:" \
             f"{postgres.port}/{postgres.database}"
        backends: dict[str, tuple[str, Callable[[], None], Callable[[], float],
                                  Callable[[], None]]] = {
            "redis": (stack.backend_url, lambda: _fill_redis(stack, ids),
                      lambda: _redis_calls(stack), lambda: _start_redis(stack, ids)),
            "postgresql (db+)": (
                "db+" + db, lambda: _fill_sql(db, "celery_taskmeta", CELERY_DDL, _celery_row, ids),
                lambda: 0.0, lambda: _start_sql(db, "celery_taskmeta", RUNNING.encode())),
            "django-celery-results": (
                "django-db+" + db,
                lambda: _fill_sql(db, "django_celery_results_taskresult", DJANGO_DDL,
                                  _django_row, ids),
                lambda: 0.0, lambda: _start_sql(db, "django_celery_results_taskresult", RUNNING)),
        }
        out: dict[str, Any] = {"tracked": n, "polls": POLLS, "backends": {}}
        for name, (url, fill, redis_calls, start) in backends.items():
            server = stack.redis.process if name == "redis" else postgres.process
            assert server is not None and server.pid is not None
            for case, prepare in ((name, fill), (f"{name}, running", start)):
                prepare()
                out["backends"][case] = _measure(url, ids, server.pid, redis_calls)
                log(f"result reads {case}: {out['backends'][case]}")
        return out
    finally:
        postgres.stop()


def _measure(url: str, ids: list[str], server_pid: int,
             redis_calls: Callable[[], float]) -> dict[str, Any]:
    reader = ResultReader(url)
    statements = 0

    def seen(*_: Any) -> None:
        nonlocal statements
        statements += 1

    try:
        states = reader.read(ids)  # warm: connections, the table's columns
        missing = sum(s is None for s in states.values())
        sa.event.listen(sa.Engine, "before_cursor_execute", seen)
        calls0, server0 = redis_calls(), measure.tree_cpu_seconds(server_pid)
        cpu0, wall0 = time.process_time(), time.monotonic()
        for _ in range(POLLS):
            reader.read(ids)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        server = measure.tree_cpu_seconds(server_pid) - server0
        queries = (redis_calls() - calls0) or statements
    finally:
        with contextlib.suppress(Exception):
            sa.event.remove(sa.Engine, "before_cursor_execute", seen)
        reader.close()
    per_k = 1000 / len(ids)
    return {
        "missing": missing,
        "queries_per_poll": queries / POLLS,
        "queries_per_poll_per_1000": round(queries / POLLS * per_k, 3),
        "poll_ms": round(wall / POLLS * 1000, 1),
        "reader_cpu_ms_per_poll_per_1000": round(cpu / POLLS * per_k * 1000, 2),
        "server_cpu_ms_per_poll_per_1000": round(server / POLLS * per_k * 1000, 2),
        # At the operator's default of one poll per second.
        "core_share_at_1_poll_per_s": round((cpu + server) / POLLS, 4),
    }


def _meta(task_id: str, n: int) -> dict[str, Any]:
    return {"status": "SUCCESS", "result": {"n": n}, "traceback": None, "children": [],
            "date_done": datetime.now(UTC).isoformat(), "task_id": task_id,
            "worker": "bench@localhost", "retries": 0}


def _fill_redis(stack: Stack, ids: list[str]) -> None:
    with contextlib.closing(redis_lib.Redis.from_url(stack.backend_url)) as r:
        pipe = r.pipeline(transaction=False)
        for n, task_id in enumerate(ids):
            pipe.set(META_PREFIX + task_id, json.dumps(_meta(task_id, n)), ex=3600)
        pipe.execute()


def _start_redis(stack: Stack, ids: list[str]) -> None:
    with contextlib.closing(redis_lib.Redis.from_url(stack.backend_url)) as r:
        pipe = r.pipeline(transaction=False)
        for n, task_id in enumerate(ids):
            meta = _meta(task_id, n) | {"status": "STARTED", "result": json.loads(RUNNING)}
            pipe.set(META_PREFIX + task_id, json.dumps(meta), ex=3600)
        pipe.execute()


def _start_sql(url: str, table: str, result: str | bytes) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE {table} SET status = 'STARTED', result = :r"),
                         {"r": result})
        # What autovacuum does soon after: a running task's row is a fresh insert, not
        # 10,000 dead versions left by this update.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f"VACUUM ANALYZE {table}"))
    finally:
        engine.dispose()


def _redis_calls(stack: Stack) -> float:
    with contextlib.closing(redis_lib.Redis.from_url(stack.backend_url)) as r:
        stats = r.info("commandstats").get("cmdstat_mget") or {}
        return float(stats.get("calls", 0))


def _celery_row(task_id: str, n: int) -> dict[str, Any]:
    return {"task_id": task_id, "status": "SUCCESS", "result": json.dumps({"n": n}).encode(),
            "date_done": datetime.now(UTC).replace(tzinfo=None), "worker": "bench@localhost",
            "retries": 0}


def _django_row(task_id: str, n: int) -> dict[str, Any]:
    return {"task_id": task_id, "status": "SUCCESS", "result": json.dumps({"n": n}),
            "content_type": "application/json", "content_encoding": "utf-8",
            "date_done": datetime.now(UTC), "worker": "bench@localhost"}


def _fill_sql(url: str, table: str, ddl: str, row: Callable[[str, int], dict[str, Any]],
              ids: list[str]) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(ddl))
            rows = [row(task_id, n) for n, task_id in enumerate(ids)]
            columns = list(rows[0])
            conn.execute(
                sa.text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                        f"({', '.join(':' + c for c in columns)})"), rows)
            conn.execute(sa.text(f"ANALYZE {table}"))
    finally:
        engine.dispose()
