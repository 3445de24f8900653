"""ResultReader against a real redis-server: one bad record stops only its own task."""

from __future__ import annotations

import logging
import pickle
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import redis as redis_lib
from celery import Celery

from celery_operator.api.celery_state import UNREADABLE, TaskState
from celery_operator.dispatch.results import META_PREFIX, ResultReader

pytestmark = pytest.mark.integration

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
