"""celery_operator.worker: a task id published twice runs once; one revoked through the
operator never runs, even on a worker that missed the broadcast."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis as redis_lib
from celery import Celery

from celery_operator.api import TaskCall
from celery_operator.api.celery_state import TaskState
from celery_operator.devstack import CeleryWorker, RedisServer, free_port
from celery_operator.devstack.demo_app import DROPPED_KEY, RUNS_KEY
from celery_operator.devstack.postgresserver import PostgresServer
from celery_operator.dispatch.backend import CeleryBackend
from celery_operator.dispatch.publisher import Publication
from celery_operator.worker import PostgresClaims

from .conftest import fresh_database, postgres_url

pytestmark = pytest.mark.integration


def _send_twice(broker_url: str, queue: str, task_id: str, operator_header: bool) -> None:
    app = Celery("t", broker=broker_url)
    app.conf.update(task_serializer="json", accept_content=["json"])
    headers = {"celeryoperator_uid": "u-1"} if operator_header else {}
    for _ in range(2):
        app.send_task("demo.add", args=[1, 2], task_id=task_id, queue=queue, headers=headers)


def _wait_count(results: redis_lib.Redis, key: str, want: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    value = 0
    while time.monotonic() < deadline:
        value = int(results.get(key) or 0)
        if value >= want:
            return value
        time.sleep(0.1)
    return value


@pytest.mark.parametrize("claims", ["redis", "postgresql", None])
def test_republished_id_runs_once_with_the_guard_and_twice_without(
    claims: str | None, broker_url: str, backend_url: str, tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    queue = f"guard-{uuid.uuid4().hex[:6]}"
    guarded = claims is not None
    env = {"DEMO_RUN_ONCE": "1"} if guarded else {}
    if claims == "postgresql":
        env["DEMO_GUARD_URL"] = postgres_url(request.getfixturevalue("postgres"))
    worker = CeleryWorker(broker_url, backend_url, queues=(queue,), workdir=tmp_path,
                          extra_env=env).start()
    results = redis_lib.Redis.from_url(backend_url)
    try:
        task_id = str(uuid.uuid4())
        _send_twice(broker_url, queue, task_id, operator_header=True)
        if guarded:
            assert _wait_count(results, DROPPED_KEY + task_id, 1) == 1
            assert int(results.get(RUNS_KEY + task_id) or 0) == 1
            # The dropped delivery leaves the first run's record, not a STARTED of its own
            # (the demo app tracks started): the operator would wait on that forever.
            time.sleep(0.5)
            meta = json.loads(results.get(f"celery-task-meta-{task_id}") or b"{}")
            assert meta.get("status") == "SUCCESS" and meta.get("result") == 3, meta
        else:
            assert _wait_count(results, RUNS_KEY + task_id, 2) == 2  # Celery alone: twice
    finally:
        worker.stop()


def _wait_status(
    backend: CeleryBackend, task_id: str, want: str, timeout: float = 30
) -> TaskState | None:
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = backend.read([task_id])[task_id]
        if state is not None and state.status == want:
            return state
        time.sleep(0.1)
    return state


@pytest.mark.parametrize("store", ["result backend", "result database", "separate guard store"])
def test_a_task_marked_revoked_never_runs_and_the_backend_says_revoked(
    store: str, broker_url: str, backend_url: str, redis_server: RedisServer, tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    queue = f"revoke-{uuid.uuid4().hex[:6]}"
    if store in ("result backend", "result database"):
        app, env = "celery_operator.devstack.demo_app", {"DEMO_RUN_ONCE": "1"}
        if store == "result database":  # marks and claims as rows in the results' database
            backend_url = postgres_url(request.getfixturevalue("postgres"))
    else:  # claims elsewhere; the operator's revoke mark is still in the result backend
        app = "bench.worker_app"
        env = {"BENCH_GUARD_URL": redis_server.db_url(2),
               "BENCH_RECORDER_URL": redis_server.db_url(3)}
    # One process: the second task below runs only after the first one's trace ended.
    worker = CeleryWorker(broker_url, backend_url, queues=(queue,), workdir=tmp_path,
                          extra_env=env, app=app, concurrency=1).start()
    backend = CeleryBackend(broker_url, backend_url)
    try:
        revoked, control = str(uuid.uuid4()), str(uuid.uuid4())
        backend.mark_revoked(revoked)  # no broadcast: as if no worker had listened
        for task_id in (revoked, control):
            backend.publish(Publication(
                TaskCall("demo.echo_json", kwargs={"ran": task_id}, queue=queue),
                task_id=task_id, headers={"celeryoperator_uid": "u-1"},
            ))
        state = _wait_status(backend, revoked, "REVOKED")
        assert state is not None and state.status == "REVOKED", state
        assert state.exception_type == "TaskRevokedError"
        done = _wait_status(backend, control, "SUCCESS")
        assert done is not None and done.result == {"ran": control}, done
        # The body never ran: it would have stored SUCCESS over REVOKED by now.
        after = backend.read([revoked])[revoked]
        assert after is not None and after.status == "REVOKED" and after.result == state.result
    finally:
        backend.close()
        worker.stop()


def test_a_task_whose_id_cannot_be_claimed_fails_and_never_runs_unguarded(
    broker_url: str, backend_url: str, postgres: PostgresServer, tmp_path: Path,
) -> None:
    """Celery runs a task whose task_prerun handler raised: the guard must not fail open
    when its claim store is down (here: a PostgreSQL port nobody listens on)."""
    queue = f"unclaimed-{uuid.uuid4().hex[:6]}"
    env = {"DEMO_RUN_ONCE": "1", "DEMO_GUARD_URL": postgres_url(postgres, port=free_port())}
    worker = CeleryWorker(broker_url, backend_url, queues=(queue,), workdir=tmp_path,
                          extra_env=env).start()
    backend = CeleryBackend(broker_url, backend_url)
    results = redis_lib.Redis.from_url(backend_url)
    try:
        task_id = str(uuid.uuid4())
        backend.publish(Publication(TaskCall("demo.add", args=(1, 2), queue=queue),
                                    task_id=task_id, headers={"celeryoperator_uid": "u-1"}))
        state = _wait_status(backend, task_id, "FAILURE")
        assert state is not None and state.status == "FAILURE", state
        assert state.exception_type == "ClaimUnavailable", state
        assert int(results.get(RUNS_KEY + task_id) or 0) == 0  # the body never ran
    finally:
        backend.close()
        worker.stop()


def test_worker_processes_creating_the_claim_tables_at_once_all_claim_and_one_wins(
    postgres: PostgresServer,
) -> None:
    """A fresh database and eight processes' first task at the same instant: each creates
    the tables it finds missing; PostgreSQL refuses concurrent CREATE TABLEs of one name
    (pg_type), which must not fail a claim (and so a task)."""
    url = fresh_database(postgres, "race")
    task_id = str(uuid.uuid4())
    start = threading.Barrier(8)
    outcomes: list[object] = []

    def first_task() -> None:
        claims = PostgresClaims(url)  # each pool process has its own engine
        start.wait()
        try:
            outcomes.append(claims.check_and_claim(task_id, 60))
        except Exception as exc:  # what the race raised before the lock
            outcomes.append(exc)

    threads = [threading.Thread(target=first_task) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [o for o in outcomes if isinstance(o, Exception)] == []
    assert sorted(outcomes, key=str) == [(False, False)] * 7 + [(False, True)]
