"""ResultReader against a real redis-server and a real PostgreSQL (Celery's database
backend, django-celery-results): one batched query per poll, one bad record stops only
its own task, and a backend that cannot be read says why in one line, password hidden."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis as redis_lib
import sqlalchemy as sa
from celery import Celery

from celery_operator.api.celery_state import UNREADABLE, TaskState
from celery_operator.devstack.postgresserver import PostgresServer
from celery_operator.devstack.processes import free_port
from celery_operator.dispatch.results import META_PREFIX, ResultBackendError, ResultReader

from .conftest import POSTGRES_PASSWORD as PASSWORD
from .conftest import postgres_url as db_url

pytestmark = [pytest.mark.integration, pytest.mark.serial]

ROOT = Path(__file__).resolve().parents[2]
DJANGO_ROWS = ROOT / "tests" / "data" / "django_result_rows.py"

# Each bad record, as it sits in Redis, and the reason the reader must give for it.
BAD_RECORDS: dict[str, tuple[bytes, str]] = {
    "pickled": (pickle.dumps({"status": "SUCCESS", "result": 3}), "not JSON (pickled)"),
    # msgpack of {"status": "SUCCESS"}: a fixmap of one entry, two fixstrs.
    "msgpack": (b"\x81\xa6status\xa7SUCCESS", "not JSON (binary, e.g. msgpack)"),
    "garbage": (b"{status: SUCCESS", "not JSON"),
    "nan": (b'{"status": "SUCCESS", "result": NaN}', "not JSON (NaN)"),
    "deep": (b"[" * 100_000 + b"]" * 100_000, "not JSON (nested too deeply)"),
    "array": (b'["SUCCESS", 3]', "not a JSON object"),
    "string": (b'"SUCCESS"', "not a JSON object"),
    "no status": (b'{"result": 3}', "status is missing"),
    "status number": (b'{"status": 5}', "status is not a string"),
    "date word": (b'{"status": "SUCCESS", "date_done": "yesterday"}', "date_done is not a date"),
    "date number": (b'{"status": "SUCCESS", "date_done": 1700000000}', "date_done is not a date"),
    "retries text": (b'{"status": "RETRY", "retries": "3"}', "retries is not an integer"),
    "retries bool": (b'{"status": "RETRY", "retries": true}', "retries is not an integer"),
    "traceback list": (b'{"status": "FAILURE", "traceback": ["x"]}', "traceback is not a string"),
    "worker number": (b'{"status": "STARTED", "worker": 7}', "worker is not a string"),
}


@pytest.fixture
def reader(backend_url: str) -> ResultReader:
    return ResultReader(backend_url)


def _celery_backend(backend_url: str) -> Any:
    """Celery's own Redis result backend, writing records the way workers do."""
    app = Celery("writer", backend=backend_url, set_as_current=False)
    app.conf.update(result_serializer="json", accept_content=["json"], result_extended=True)
    return app.backend


def test_one_batch_decodes_good_records_and_quarantines_each_bad_one(
    reader: ResultReader, results: redis_lib.Redis, backend_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = uuid.uuid4().hex[:8]
    backend = _celery_backend(backend_url)
    done, started, failed = f"{run}-done", f"{run}-started", f"{run}-failed"
    backend.store_result(done, {"rows": [1, 2]}, "SUCCESS")
    backend.store_result(started, {"pid": 42, "hostname": "w1@node"}, "STARTED")
    backend.store_result(failed, ValueError("boom"), "FAILURE")
    bad_ids = {f"{run}-{name}": record for name, record in BAD_RECORDS.items()}
    for task_id, (raw, _) in bad_ids.items():
        results.set(META_PREFIX + task_id, raw)
    missing = f"{run}-missing"

    ids = [done, *bad_ids, started, missing, failed]
    with caplog.at_level(logging.WARNING, logger="celery_operator.dispatch.results"):
        states = reader.read(ids)
        again = reader.read(ids)

    assert set(states) == set(ids)
    for task_id, (_, reason) in bad_ids.items():
        assert states[task_id] == TaskState(task_id=task_id, status=UNREADABLE, result=reason)
    good = states[done]
    assert good is not None and good.status == "SUCCESS" and good.result == {"rows": [1, 2]}
    assert good.date_done is not None and good.date_done.tzinfo is not None
    assert abs((datetime.now(UTC) - good.date_done).total_seconds()) < 60
    running = states[started]
    assert running is not None and running.status == "STARTED" and running.worker == "w1@node"
    failure = states[failed]
    assert failure is not None and failure.status == "FAILURE"
    assert failure.exception_type == "ValueError" and failure.exception_message == "boom"
    assert states[missing] is None
    assert again == states
    # Each bad id is logged once, however often it is read.
    logged = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(logged) == len(bad_ids)
    assert {next(i for i in bad_ids if i in m) for m in logged} == set(bad_ids)


def test_a_record_replaced_by_a_good_one_is_read_again(
    reader: ResultReader, results: redis_lib.Redis
) -> None:
    task_id = f"{uuid.uuid4().hex[:8]}-healed"
    results.set(META_PREFIX + task_id, b"\x80\x04garbage")
    first = reader.read([task_id])[task_id]
    assert first is not None and first.status == UNREADABLE
    results.set(META_PREFIX + task_id, b'{"status": "SUCCESS", "result": 1, "retries": 0}')
    assert reader.read([task_id])[task_id] == TaskState(
        task_id=task_id, status="SUCCESS", result=1, retries=0
    )


class Queries:
    """SELECTs of `table` sent by any SQLAlchemy engine while counting."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.count = 0

    def _seen(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and self.table in statement:
            self.count += 1

    def __enter__(self) -> Queries:
        sa.event.listen(sa.Engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *_: object) -> None:
        sa.event.remove(sa.Engine, "before_cursor_execute", self._seen)


def test_celery_database_rows_are_read_in_one_query_per_poll(
    postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    run = uuid.uuid4().hex[:8]
    app = Celery("writer", backend=db_url(postgres), set_as_current=False)
    app.conf.update(result_serializer="json", accept_content=["json"], result_extended=True)
    done, started, failed = f"{run}-done", f"{run}-started", f"{run}-failed"
    app.backend.store_result(done, {"rows": [1, 2]}, "SUCCESS")
    app.backend.store_result(started, {"pid": 42, "hostname": "w1@node"}, "STARTED")
    app.backend.store_result(failed, ValueError("boom"), "FAILURE")
    pickled, garbage = f"{run}-pickled", f"{run}-garbage"
    engine = sa.create_engine(db_url(postgres, ""))
    with engine.begin() as conn:  # a row from before Celery stored JSON, and a broken one
        for task_id, raw in ((pickled, pickle.dumps(3)), (garbage, b"{status")):
            conn.execute(sa.text("INSERT INTO celery_taskmeta (id, task_id, status, result) "
                                 "VALUES (nextval('task_id_sequence'), :i, 'SUCCESS', :r)"),
                         {"i": task_id, "r": raw})
    engine.dispose()
    missing = [f"{run}-missing-{n}" for n in range(1_495)]
    ids = [done, started, pickled, *missing, garbage, failed]  # 1,500 ids

    reader = ResultReader(db_url(postgres).replace("+psycopg", ""))  # as users spell it
    try:
        with Queries("celery_taskmeta") as queries, caplog.at_level(logging.WARNING):
            states = reader.read(ids)
    finally:
        reader.close()

    assert queries.count == 1  # 1,500 ids: one batch (up to 10,000)
    assert set(states) == set(ids) and all(states[i] is None for i in missing)
    good = states[done]
    assert good is not None and (good.status, good.result) == ("SUCCESS", {"rows": [1, 2]})
    assert good.date_done is not None
    assert abs((datetime.now(UTC) - good.date_done).total_seconds()) < 60
    running = states[started]
    assert running is not None and (running.status, running.worker) == ("STARTED", "w1@node")
    failure = states[failed]
    assert failure is not None and failure.status == "FAILURE"
    assert (failure.exception_type, failure.exception_message) == ("ValueError", "boom")
    assert states[pickled] == TaskState(pickled, UNREADABLE, result="not JSON (pickled)")
    assert states[garbage] == TaskState(garbage, UNREADABLE, result="not JSON")
    logged = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert sorted(logged) == sorted(
        f"result record of task {i} is unreadable: {why}"
        for i, why in ((pickled, "not JSON (pickled)"), (garbage, "not JSON"))
    )


def test_django_celery_results_rows_are_read_without_django(postgres: PostgresServer) -> None:
    run = uuid.uuid4().hex[:8]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT)])}
    made = subprocess.run(
        [sys.executable, str(DJANGO_ROWS), "127.0.0.1", str(postgres.port),
         postgres.database, postgres.user, PASSWORD],
        input=run, capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert made.returncode == 0, made.stderr
    reader = ResultReader(db_url(postgres, "django-db+"))
    try:
        states = reader.read([f"{run}-{n}" for n in ("done", "failed", "started", "pickled")])
    finally:
        reader.close()
    done = states[f"{run}-done"]
    assert done is not None and (done.status, done.result) == ("SUCCESS", {"n": 3})
    assert done.date_done is not None and done.date_done.tzinfo is not None
    failed = states[f"{run}-failed"]
    assert failed is not None and failed.status == "FAILURE"
    assert (failed.exception_type, failed.exception_message) == ("ValueError", "boom")
    started = states[f"{run}-started"]
    assert started is not None and (started.status, started.worker) == ("STARTED", "w1@node")
    assert states[f"{run}-pickled"] == TaskState(
        f"{run}-pickled", UNREADABLE, result="not JSON (application/x-python-serialize)"
    )


@pytest.mark.parametrize(
    ("case", "cause"),
    [
        ("wrong password", 'password authentication failed for user "celery"'),
        ("no server", "Connection refused"),
        ("no table", "table celery_taskmeta does not exist (the workers create it when "
                     "they first store a result)"),
    ],
)
def test_a_database_that_cannot_be_read_is_one_line_without_the_password(
    postgres: PostgresServer, case: str, cause: str
) -> None:
    url = {
        "wrong password": db_url(postgres, password="not-" + PASSWORD),
        "no server": db_url(postgres, port=free_port()),
        "no table": db_url(postgres, database="postgres"),  # exists, holds no results
    }[case]
    reader = ResultReader(url)
    try:
        with pytest.raises(ResultBackendError) as raised:
            reader.check()
    finally:
        reader.close()
    message = str(raised.value)
    assert message.startswith("db+postgresql+psycopg://celery:***@127.0.0.1:")
    assert cause in message and "\n" not in message
    for secret in (PASSWORD, quote(PASSWORD, safe=""), "not-"):
        assert secret not in message


def test_a_poll_moves_only_changed_rows_and_notices_updates_and_deletions(
    postgres: PostgresServer,
) -> None:
    run = uuid.uuid4().hex[:8]
    app = Celery("writer", backend=db_url(postgres), set_as_current=False)
    app.conf.update(result_serializer="json", accept_content=["json"])
    running, finishing, deleted = f"{run}-running", f"{run}-finishing", f"{run}-deleted"
    queued = f"{run}-queued"  # no row yet: nothing sent back for it until it has one
    for task_id in (running, finishing, deleted):
        app.backend.store_result(task_id, {"pid": 1, "hostname": "w1@node"}, "STARTED")
    ids = [running, finishing, deleted, queued]
    rows: list[int] = []

    def count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "json_to_recordset" in statement:  # the reader's (Celery selects as it stores)
            rows.append(cursor.rowcount)

    reader = ResultReader(db_url(postgres))
    sa.event.listen(sa.Engine, "after_cursor_execute", count)
    try:
        first = reader.read(ids)
        assert rows == [3]
        assert reader.read(ids) == first and rows == [3, 0]  # nothing changed: no row sent
        app.backend.store_result(finishing, {"rows": 1}, "SUCCESS")
        engine = sa.create_engine(db_url(postgres, ""))
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM celery_taskmeta WHERE task_id = :i"),
                         {"i": deleted})
        engine.dispose()
        states = reader.read(ids)
        app.backend.store_result(queued, {"pid": 2, "hostname": "w1@node"}, "STARTED")
        later = reader.read(ids)
    finally:
        sa.event.remove(sa.Engine, "after_cursor_execute", count)
        reader.close()
    assert rows == [3, 0, 2, 1]  # the changed row and the deleted id; the new row
    assert first[queued] is None
    assert states[running] == first[running]
    done = states[finishing]
    assert done is not None and (done.status, done.result) == ("SUCCESS", {"rows": 1})
    assert states[deleted] is None and states[queued] is None
    started = later[queued]
    assert started is not None and (started.status, started.worker) == ("STARTED", "w1@node")
    assert later[finishing] == done and later[running] == first[running]
