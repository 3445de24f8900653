"""Durability on the real stack: crashes and restarts of every part lose nothing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis as redis_lib

from celery_operator.api import parse_time
from celery_operator.devstack import CeleryWorker, ControlPlane, KubeEnv, RedisServer
from celery_operator.devstack.demo_app import RUNS_KEY, STARTED_KEY

from .conftest import StartOperator, Tasks, events_for, wait_for_events

pytestmark = pytest.mark.integration


@pytest.fixture
def queue(tmp_path: Path) -> str:
    """A queue only this test's workers listen on."""
    return f"q-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def guarded_worker_factory(
    broker_url: str, backend_url: str, tmp_path: Path, queue: str
) -> Iterator[object]:
    workers: list[CeleryWorker] = []

    def start(concurrency: int = 4) -> CeleryWorker:
        worker = CeleryWorker(
            broker_url, backend_url, queues=(queue,), concurrency=concurrency,
            workdir=tmp_path, extra_env={"DEMO_RUN_ONCE": "1"},
        ).start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def _runs(results: redis_lib.Redis, task_ids: list[str]) -> list[int]:
    values = results.mget([RUNS_KEY + i for i in task_ids])
    return [int(v) if v else 0 for v in values]


def _create_many(tasks: Tasks, count: int, queue: str, countdown_of: object) -> None:
    for i in range(count):
        countdown = countdown_of(i)  # type: ignore[operator]
        tasks.create(f"t{i:03d}", {"task": {"name": "demo.add", "args": [i, 1], "queue": queue},
                                   "countdown": countdown})


def test_operator_sigkilled_while_200_tasks_are_due_loses_and_doubles_nothing(
    start_operator: StartOperator, tasks: Tasks, guarded_worker_factory, queue: str,
    results: redis_lib.Redis,
) -> None:
    guarded_worker_factory(concurrency=8)
    operator = start_operator()
    _create_many(tasks, 200, queue, lambda i: 5 + (i % 30))  # due over ~30 s
    time.sleep(12)  # some ran, some are being dispatched, most are still ahead
    operator.kill()
    time.sleep(6)  # due times pass while nobody is watching
    start_operator()
    items = tasks.wait_all("Succeeded", 200, timeout=120)
    ids = [i["status"]["taskId"] for i in items]
    assert _runs(results, ids) == [1] * 200
    for item in items:
        # Countdowns count from creation: nothing was pushed back by the restart.
        due = parse_time(item["status"]["dueTime"])
        created = parse_time(item["metadata"]["creationTimestamp"])
        assert due == created + timedelta(seconds=item["spec"]["countdown"])
        started = float(results.get(STARTED_KEY + item["status"]["taskId"]))
        assert started >= due.timestamp() - 0.05
        assert started <= due.timestamp() + 30  # late only by the outage, never by a restart


def test_api_server_restart_loses_nothing(
    kube: KubeEnv, start_operator: StartOperator, tasks: Tasks, guarded_worker_factory,
    queue: str, results: redis_lib.Redis,
) -> None:
    if not isinstance(kube, ControlPlane):
        pytest.skip("restarting the API server needs the embedded control plane")
    guarded_worker_factory()
    start_operator()
    _create_many(tasks, 20, queue, lambda i: 4 + i % 8)
    tasks.wait_all(("Scheduled", "Dispatching", "Queued", "Started", "Succeeded"), 20,
                   timeout=20)
    kube.restart_apiserver(down_seconds=5)
    items = tasks.wait_all("Succeeded", 20, timeout=90)
    assert _runs(results, [i["status"]["taskId"] for i in items]) == [1] * 20


def test_redis_restarted_empty_before_workers_took_the_tasks_republishes_them(
    redis_server: RedisServer, start_operator: StartOperator, tasks: Tasks,
    guarded_worker_factory, queue: str, core, namespace: str,
) -> None:
    start_operator()
    _create_many(tasks, 10, queue, lambda i: 0)
    tasks.wait_all("Queued", 10, timeout=30)  # no worker on this queue yet
    redis_server.restart_empty()
    results = redis_lib.Redis.from_url(redis_server.db_url(1))
    guarded_worker_factory()
    items = tasks.wait_all("Succeeded", 10, timeout=60)
    assert _runs(results, [i["status"]["taskId"] for i in items]) == [1] * 10
    events = wait_for_events(core, namespace, "t000",
                             lambda es: "Republished" in [r for _, r, _ in es])
    assert "Republished" in [r for _, r, _ in events]


def test_tasks_wait_for_a_worker_and_status_catches_up(
    start_operator: StartOperator, tasks: Tasks, guarded_worker_factory, queue: str,
    results: redis_lib.Redis, core, namespace: str,
) -> None:
    start_operator()
    _create_many(tasks, 5, queue, lambda i: 0)
    tasks.wait_all("Queued", 5, timeout=20)
    time.sleep(60)  # nobody listens on the queue for a minute
    assert all(i["status"]["phase"] == "Queued" for i in tasks.list())
    # The user is told why: a Warning that no worker consumes the queue.
    events = wait_for_events(core, namespace, "t000",
                             lambda es: ("Warning", "NoConsumer") in [(t, r) for t, r, _ in es])
    assert ("Warning", "NoConsumer") in [(t, r) for t, r, _ in events]
    guarded_worker_factory()
    items = tasks.wait_all("Succeeded", 5, timeout=30)
    assert _runs(results, [i["status"]["taskId"] for i in items]) == [1] * 5


def test_results_produced_while_the_operator_was_down_are_harvested(
    start_operator: StartOperator, tasks: Tasks, guarded_worker_factory, queue: str,
    results: redis_lib.Redis,
) -> None:
    operator = start_operator()
    for i in range(5):
        tasks.create(f"slow{i}", {"task": {"name": "demo.sleep", "args": [2], "queue": queue}})
    tasks.wait_all("Queued", 5, timeout=20)
    operator.kill()
    guarded_worker_factory()
    ids = [i["status"]["taskId"] for i in tasks.list()]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and results.exists(
        *[f"celery-task-meta-{i}" for i in ids]
    ) < 5:
        time.sleep(0.3)
    start_operator()
    items = tasks.wait_all("Succeeded", 5, timeout=30)
    assert all(i["status"]["result"] == 2 for i in items)


def test_two_operators_at_once_never_dispatch_an_attempt_twice(
    start_operator: StartOperator, tasks: Tasks, broker_url: str, backend_url: str,
    tmp_path: Path, queue: str, results: redis_lib.Redis, core, namespace: str,
) -> None:
    # No run-once guard here: only the conditional claim stands between two operators
    # and a double dispatch.
    worker = CeleryWorker(broker_url, backend_url, queues=(queue,), concurrency=4,
                          workdir=tmp_path).start()
    try:
        start_operator()
        start_operator()
        _create_many(tasks, 60, queue, lambda i: 3 + i % 5)
        items = tasks.wait_all("Succeeded", 60, timeout=90)
        ids = [i["status"]["taskId"] for i in items]
        assert _runs(results, ids) == [1] * 60
        for item in items[:10]:
            reasons = [r for _, r, _ in events_for(core, namespace, item["metadata"]["name"])]
            assert reasons.count("Dispatched") == 1
    finally:
        worker.stop()
