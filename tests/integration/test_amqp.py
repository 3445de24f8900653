"""The operator on RabbitMQ: a real node (devstack.RabbitMQServer) as the broker, Redis as
the result backend, real workers on AMQP and the operator run with --broker-url amqp://.

Executions are counted per task id from the workers' execution logs, without the run-once
guard: what runs twice here would run twice for a user. What every broker does alike
(results, retries, revoke, expiry, periodic children, operator restart) is proven in
test_matrix.py; here is what is RabbitMQ's own.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue
from kubernetes import client

from celery_operator.api import SCHEDULED_PLURAL, parse_time
from celery_operator.devstack import CeleryWorker, KubeEnv, RabbitMQServer
from celery_operator.devstack.demo_app import read_executions
from celery_operator.devstack.operatorproc import OperatorProcess
from celery_operator.dispatch.brokers import open_broker
from celery_operator.dispatch.publisher import celery_app, close_app

from .conftest import (
    StartOperator,
    Tasks,
    holds_for,
    wait_dispatched,
    wait_for,
    wait_for_events,
)
from .history import StatusHistory

pytestmark = [pytest.mark.integration, pytest.mark.serial]

ROUTED = "amqp-routed"  # a queue of the module's worker, with its own direct exchange
CONSUMER_TIMEOUT = 60.0  # the node's consumer_timeout (RabbitMQ's default is 30 min)

StartWorker = Callable[..., Path]


@pytest.fixture(scope="module")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQServer]:
    server = RabbitMQServer(tmp_path_factory.mktemp("rabbitmq")).start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class LongCountdown:
    """The same 120 s countdown, native and as a ScheduledTask, started at module start
    on a node of their own (consumer_timeout 60 s; the other tests restart theirs)."""

    broker_url: str
    native: CeleryWorker
    native_log: Path
    operator_log: Path  # executions of the worker the ScheduledTask runs on
    queue: str
    sent: float  # time.monotonic() the native task was sent
    created: dict[str, Any]
    tasks: Tasks


@pytest.fixture(scope="module", autouse=True)
def long_countdown(
    kube: KubeEnv, backend_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LongCountdown]:
    """Both countdowns run while the other tests of the module do (two minutes); the last
    test judges them. Its own node, namespace, workers and operator."""
    workdir = tmp_path_factory.mktemp("amqp-countdown")
    node = RabbitMQServer(workdir / "node", consumer_timeout=CONSUMER_TIMEOUT).start()
    queue = f"native-{uuid.uuid4().hex[:8]}"
    started: list[CeleryWorker | OperatorProcess] = []
    try:
        native_log, operator_log = workdir / "native.jsonl", workdir / "operator.jsonl"
        native = CeleryWorker(node.url, backend_url, queues=(queue,), concurrency=1,
                              workdir=workdir, execution_log=native_log).start()
        started.append(native)
        started.append(CeleryWorker(node.url, backend_url, concurrency=1, workdir=workdir,
                                    execution_log=operator_log).start())
        namespace = f"amqp-countdown-{uuid.uuid4().hex[:6]}"
        kube.kubectl("create", "namespace", namespace)
        started.append(OperatorProcess(kube.kubeconfig, node.url, backend_url, workdir=workdir,
                                       extra_args=["--namespace", namespace]).start())
        tasks = Tasks(client.CustomObjectsApi(kube.api_client()), namespace, SCHEDULED_PLURAL)
        created = tasks.create("in2min", {"task": {"name": "demo.add", "args": [40, 2]},
                                          "countdown": 120})
        app = celery_app(node.url, transport_options={"confirm_publish": True})
        try:
            app.send_task("demo.add", args=(1, 1), task_id="native-countdown", queue=queue,
                          countdown=120)
        finally:
            close_app(app)
        yield LongCountdown(node.url, native, native_log, operator_log, queue,
                            time.monotonic(), created, tasks)
    finally:
        for process in reversed(started):
            process.stop()
        node.stop()


@pytest.fixture(scope="module")
def broker_url(rabbitmq: RabbitMQServer) -> str:
    """Overrides the session's Redis broker for every fixture of this module."""
    return rabbitmq.url


@pytest.fixture(scope="module")
def module_executions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("amqp-executions") / "module-worker.jsonl"


@pytest.fixture(scope="module")
def amqp_worker(
    broker_url: str, backend_url: str, module_executions: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CeleryWorker]:
    worker = CeleryWorker(
        broker_url, backend_url, queues=("celery", ROUTED), concurrency=2,
        workdir=tmp_path_factory.mktemp("amqp-worker"), execution_log=module_executions,
    ).start()
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def start_worker(
    broker_url: str, backend_url: str, tmp_path: Path
) -> Iterator[StartWorker]:
    """Start a worker for one test's own queues; returns its execution log."""
    workers: list[CeleryWorker] = []
    numbers = itertools.count(1)

    def start(*queues: str) -> Path:
        log = tmp_path / f"executions-{next(numbers)}.jsonl"
        worker = CeleryWorker(
            broker_url, backend_url, queues=queues, concurrency=2, workdir=tmp_path,
            execution_log=log,
        ).start()
        workers.append(worker)
        return log

    yield start
    for worker in workers:
        worker.stop()


def _runs(*logs: Path) -> dict[str, int]:
    return dict(read_executions(*logs).runs)


def _queue_depth(url: str, queue: str) -> int:
    broker = open_broker(url)
    try:
        return broker.queue_depth(queue)
    finally:
        broker.close()


def _create_queued(tasks: Tasks, count: int, queue: str) -> list[str]:
    """`count` tasks on `queue` (nobody consumes it yet), once all are Queued: their ids."""
    for i in range(count):
        tasks.create(f"t{i}", {"task": {"name": "demo.add", "args": [i, 1], "queue": queue}})
    items = tasks.wait_all("Queued", count, timeout=30)
    return sorted(str(i["status"]["taskId"]) for i in items)


def test_a_routed_task_with_priority_and_headers_is_published_durably_and_runs_once(
    amqp_worker: CeleryWorker, module_executions: Path, start_operator: StartOperator,
    tasks: Tasks, broker_url: str,
) -> None:
    # A second queue bound to the same exchange and key receives a copy of the message:
    # what the broker really holds, read without taking it from the worker.
    tap = f"tap-{uuid.uuid4().hex[:8]}"
    with Connection(broker_url) as conn:
        Queue(tap, Exchange(ROUTED, type="direct"), routing_key=ROUTED,
              durable=True)(conn.default_channel).declare()
    start_operator()
    tasks.create("routed", {"task": {
        "name": "demo.echo_json", "kwargs": {"n": 7}, "queue": ROUTED, "exchange": ROUTED,
        "routingKey": ROUTED, "priority": 5, "headers": {"tenant": "blue"},
    }})
    obj = tasks.wait_phase("routed", "Succeeded", timeout=30)
    task_id = obj["status"]["taskId"]
    assert obj["status"]["result"] == {"n": 7}
    assert obj["status"]["worker"] == amqp_worker.name
    with Connection(broker_url) as conn:
        copy = conn.SimpleQueue(tap).get(timeout=10)
        copy.ack()
    assert copy.headers["id"] == task_id
    assert copy.headers["tenant"] == "blue"
    assert copy.headers["celeryoperator_name"] == "routed"
    assert copy.properties["priority"] == 5
    assert copy.properties["delivery_mode"] == 2  # persistent: on disk once confirmed
    wait_for(lambda: _runs(module_executions).get(task_id) == 1, 10, "the run in the log")
    holds_for(lambda: _runs(module_executions).get(task_id) == 1, 2, "it ran exactly once")


def test_a_wrong_routing_key_is_reported_and_retried_not_dropped(
    start_operator: StartOperator, tasks: Tasks
) -> None:
    """RabbitMQ drops a message no queue is bound for, unless it is mandatory: the
    operator's are, so the broker returns it and the user is told."""
    start_operator()
    tasks.create("lost", {"task": {"name": "demo.add", "args": [1, 1], "queue": ROUTED,
                                   "exchange": ROUTED, "routingKey": "nobody-binds-this"}})

    def ready() -> dict[str, Any]:
        conditions = (tasks.get("lost").get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Ready"), {})

    wait_for(lambda: ready().get("reason") == "DispatchFailed", 30, "DispatchFailed")
    assert "no queue is bound for the message's exchange and routing key" in ready()["message"]
    assert tasks.get("lost")["status"]["phase"] == "Dispatching"


def test_revoking_a_countdown_task_the_worker_holds_ends_revoked_and_it_never_runs(
    amqp_worker: CeleryWorker, module_executions: Path, start_operator: StartOperator,
    tasks: Tasks,
) -> None:
    # Published 8 s before it is due: the worker holds it (eta) when the revoke comes.
    operator = start_operator("--dispatch-lead", "8")
    tasks.create("later", {"task": {"name": "demo.add", "args": [1, 2]}, "countdown": 10})
    wait_dispatched(operator, 1)
    task_id = tasks.get("later")["status"]["taskId"]
    tasks.patch_spec("later", {"revoke": {}})
    tasks.wait_phase("later", "Revoked", timeout=30)
    holds_for(lambda: task_id not in _runs(module_executions), 3, "the task never ran")


def test_nobody_consumes_then_a_restart_with_data_loses_nothing_and_runs_nothing_twice(
    rabbitmq: RabbitMQServer, start_operator: StartOperator, tasks: Tasks,
    start_worker: StartWorker, core: client.CoreV1Api, namespace: str,
    status_history: StatusHistory,
) -> None:
    queue = f"later-{uuid.uuid4().hex[:8]}"
    start_operator()
    ids = _create_queued(tasks, 5, queue)
    # Nobody consumes the queue: the user is told so (after the 20 s grace).
    events = wait_for_events(core, namespace, "t0", lambda es: ("Warning", "NoConsumer") in
                             [(t, r) for t, r, _ in es], timeout=45)
    assert ("Warning", "NoConsumer") in [(t, r) for t, r, _ in events]
    run_id = tasks.get("t0")["status"]["brokerRunId"]
    rabbitmq.restart()
    broker = open_broker(rabbitmq.url)
    try:
        # The persistent messages came back, and nobody consumes them yet.
        assert (broker.queue_depth(queue), broker.queue_consumers(queue)) == (5, 0)
        log = start_worker(queue)
        items = tasks.wait_all("Succeeded", 5, timeout=60)
        assert (broker.queue_depth(queue), broker.queue_consumers(queue)) == (0, 1)
        assert (broker.queue_depth("no-such-queue"), broker.queue_consumers("no-such-queue")) \
            == (0, 0)
    finally:
        broker.close()
    assert {i["status"]["brokerRunId"] for i in items} == {run_id}
    status_history.wait_caught_up(items)
    assert {i: status_history.allowance(i).republishes for i in ids} == dict.fromkeys(ids, 0)
    wait_for(lambda: sorted(_runs(log)) == ids, 10, "every run in the log")
    holds_for(lambda: _runs(log) == dict.fromkeys(ids, 1), 2, "each ran exactly once")


def test_a_node_back_without_its_data_gets_every_queued_task_again_under_its_id(
    rabbitmq: RabbitMQServer, start_operator: StartOperator, tasks: Tasks,
    start_worker: StartWorker, core: client.CoreV1Api, namespace: str,
    status_history: StatusHistory,
) -> None:
    queue = f"wiped-{uuid.uuid4().hex[:8]}"
    start_operator()
    ids = _create_queued(tasks, 5, queue)
    run_id = tasks.get("t0")["status"]["brokerRunId"]
    rabbitmq.restart_empty()
    log = start_worker(queue)
    items = tasks.wait_all("Succeeded", 5, timeout=60)
    assert sorted(i["status"]["taskId"] for i in items) == ids  # the same ids
    assert run_id not in {i["status"]["brokerRunId"] for i in items}
    status_history.wait_caught_up(items)
    assert {i: status_history.allowance(i).republishes for i in ids} == dict.fromkeys(ids, 1)
    wait_for(lambda: sorted(_runs(log)) == ids, 10, "every run in the log")
    holds_for(lambda: _runs(log) == dict.fromkeys(ids, 1), 2, "each ran exactly once")
    events = wait_for_events(core, namespace, "t0",
                             lambda es: "Republished" in [r for _, r, _ in es])
    assert [r for _, r, _ in events].count("Republished") == 1


def test_a_countdown_longer_than_consumer_timeout_kills_a_native_worker_not_a_scheduled_task(
    long_countdown: LongCountdown,
) -> None:
    """Celery's native countdown holds the message unacknowledged in the worker until it
    is due. Past the broker's consumer_timeout the broker closes the worker's channel:
    Celery 5 takes that as unrecoverable and the worker exits, the message goes back to
    the queue and the task has not run. The operator publishes shortly before the due
    time instead, so the same countdown runs once, on time. (Last in the module: both
    countdowns began at module start.)"""
    run = long_countdown
    wait_for(lambda: not run.native.process.running(), CONSUMER_TIMEOUT + 30,
             "the native worker to exit")
    assert CONSUMER_TIMEOUT <= time.monotonic() - run.sent < 120  # before the task was due
    assert ("Unrecoverable error: PreconditionFailed(406, 'PRECONDITION_FAILED - delivery "
            "acknowledgement on channel 1 timed out") in run.native.process.log_tail(400)
    assert _runs(run.native_log) == {}
    assert _queue_depth(run.broker_url, run.queue) == 1  # back in the queue, still not run

    obj = run.tasks.wait_phase("in2min", "Succeeded", timeout=150)
    task_id = obj["status"]["taskId"]
    assert obj["status"]["result"] == 42
    due = parse_time(run.created["metadata"]["creationTimestamp"]) + timedelta(seconds=120)
    assert parse_time(obj["status"]["dueTime"]) == due
    seen = read_executions(run.operator_log)
    assert seen.runs[task_id] == 1
    assert due.timestamp() - 0.05 <= seen.first_start[task_id] <= due.timestamp() + 5
