"""Result backend modules, pure parts: URLs to backends, rows and events to states."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime

import pytest
from celery import Celery

from celery_operator.api.celery_state import FAILURE, REVOKED, STARTED, SUCCESS, TaskState
from celery_operator.dispatch.events import TaskEvent
from celery_operator.dispatch.results import open_store, result_backend_problem
from celery_operator.dispatch.results.database import CELERY, DJANGO, DatabaseResults, row_meta
from celery_operator.dispatch.results.events import EventResults
from celery_operator.dispatch.results.meta import Unreadable, state_from_meta
from celery_operator.dispatch.results.redis import RedisResults
from celery_operator.dispatch.sqlstore import one_line, sqlalchemy_url
from celery_operator.worker import install_run_once_guard

ENCODED = "p%40ss%3Aw%2Frd"  # p@ss:w/rd


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"db+postgresql://u:{ENCODED}@h:5432/app",
         f"postgresql+psycopg://u:{ENCODED}@h:5432/app"),
        ("django-db+postgres://u@h/app", "postgresql+psycopg://u@h/app"),
        ("db+postgresql+psycopg2://u@h/app", "postgresql+psycopg2://u@h/app"),
    ],
)
def test_celery_database_urls_become_sqlalchemy_urls_with_psycopg_by_default(
    url: str, expected: str
) -> None:
    assert sqlalchemy_url(url) == expected


def test_each_scheme_opens_its_backend_module() -> None:
    assert isinstance(open_store("redis://h:6379/1"), RedisResults)
    db = open_store("db+postgresql://u@h/app")
    django = open_store("django-db+postgresql://u@h/app")
    assert isinstance(db, DatabaseResults) and db.layout == CELERY
    assert isinstance(django, DatabaseResults) and django.layout == DJANGO
    assert isinstance(open_store("rpc://"), EventResults)
    assert isinstance(open_store(None), EventResults)
    assert not open_store("rpc://").available and open_store("redis://h").available
    with pytest.raises(ValueError, match="scheme 'mongodb' is not supported"):
        open_store("mongodb://h/0")
    assert result_backend_problem("db+sqlite:///x.db") == (
        "the result backend URL's database 'sqlite' is not supported "
        "(use db+postgresql:// or django-db+postgresql://)"
    )


def test_a_driver_error_is_one_line_with_the_password_hidden() -> None:
    url = f"db+postgresql://u:{ENCODED}@h:5432/app"
    line = one_line(url, OSError("connection refused\n\tIs the server running?"))
    assert line == "db+postgresql://u:***@h:5432/app: connection refused Is the server running?"


DONE = datetime(2026, 12, 1, 20, 0, 0)


def test_a_celery_taskmeta_row_decodes_as_celery_does() -> None:
    row = {"status": "SUCCESS", "result": memoryview(b'{"rows": [1, 2]}'), "traceback": None,
           "date_done": DONE, "worker": "w1@node", "retries": 0}
    state = state_from_meta("t1", row_meta(CELERY, row))
    assert state == TaskState(
        task_id="t1", status=SUCCESS, result={"rows": [1, 2]},
        date_done=DONE.replace(tzinfo=UTC), worker="w1@node", retries=0,
    )


def test_a_failure_row_keeps_the_exception_and_traceback() -> None:
    exc = {"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"}
    row = {"status": "FAILURE", "result": json.dumps(exc).encode(), "traceback": "Trace...",
           "date_done": DONE}
    state = state_from_meta("t2", row_meta(CELERY, row))
    assert (state.exception_type, state.exception_message, state.traceback) == (
        "ValueError", "boom", "Trace...")


def test_a_pickled_legacy_row_is_unreadable_with_its_reason() -> None:
    row = {"status": "SUCCESS", "result": pickle.dumps(3), "date_done": DONE}
    with pytest.raises(Unreadable, match=r"^not JSON \(pickled\)$"):
        row_meta(CELERY, row)


def test_a_django_row_is_read_by_its_content_type() -> None:
    row = {"status": "SUCCESS", "result": '{"n": 3}', "content_type": "application/json",
           "date_done": DONE.replace(tzinfo=UTC), "traceback": None, "worker": "w2@node"}
    state = state_from_meta("t3", row_meta(DJANGO, row))
    assert (state.status, state.result, state.worker) == (SUCCESS, {"n": 3}, "w2@node")
    pickled = {**row, "content_type": "application/x-python-serialize", "result": "gAN..."}
    with pytest.raises(Unreadable, match=r"^not JSON \(application/x-python-serialize\)$"):
        row_meta(DJANGO, pickled)
    pending = {**row, "status": "PENDING", "result": None, "content_type": None}
    assert state_from_meta("t3", row_meta(DJANGO, pending)).result is None


def _event(kind: str, task_id: str = "t", **extra: str) -> TaskEvent:
    return TaskEvent(kind, task_id, "w1@node", 1_796_155_200.0, **extra)


def test_events_alone_give_each_task_its_end() -> None:
    store = EventResults()
    store.record(_event("task-received", "queued"))
    store.record(_event("task-started", "running"))
    store.record(_event("task-started", "ok"))
    store.record(_event("task-succeeded", "ok"))
    store.record(_event("task-failed", "bad", exception="ValueError('boom')", traceback="Tb"))
    store.record(_event("task-revoked", "gone"))
    raw = store.fetch(["queued", "running", "ok", "bad", "gone", "unknown"], {})
    states = {i: store.parse(i, r) for i, r in raw.items()}
    assert set(states) == {"running", "ok", "bad", "gone"}
    assert states["running"].status == STARTED and states["running"].date_done is None
    ok = states["ok"]
    assert (ok.status, ok.result, ok.worker) == (SUCCESS, None, "w1@node")
    assert ok.date_done == datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
    bad = states["bad"]
    assert (bad.status, bad.exception_type, bad.exception_message, bad.traceback) == (
        FAILURE, "ValueError", "boom", "Tb")
    assert states["gone"].status == REVOKED


def test_an_end_is_not_replaced_by_a_late_started_event() -> None:
    store = EventResults()
    store.record(_event("task-succeeded"))
    store.record(_event("task-started"))
    assert store.parse("t", store.fetch(["t"], {})["t"]).status == SUCCESS


def test_the_guard_keeps_claims_where_the_url_says_and_refuses_what_it_cannot_use() -> None:
    from celery_operator.worker import PostgresClaims, RedisClaims, open_claims

    assert isinstance(open_claims("redis://h:6379/2"), RedisClaims)
    assert isinstance(open_claims(f"db+postgresql://u:{ENCODED}@h/app"), PostgresClaims)
    with pytest.raises(ValueError, match=r"^run-once guard: mongodb://u:\*\*\*@h/0 is neither"):
        open_claims(f"mongodb://u:{ENCODED}@h/0")
    app = Celery("t", broker="amqp://u:p@rabbit//", backend="rpc://", set_as_current=False)
    with pytest.raises(ValueError, match="result backend and broker are neither Redis nor "
                                         "PostgreSQL; pass claims_url="):
        install_run_once_guard(app)
