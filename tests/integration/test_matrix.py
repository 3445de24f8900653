"""The core ScheduledTask and PeriodicTask scenarios on each broker and result backend.

One stack per combination (module- and param-scoped: broker, result backend, one worker,
one operator, one namespace); every scenario's objects are created as soon as the stack
is up, so they run side by side, and each test then judges one of them. Executions are
counted per task id from the worker's execution log, which works whatever the backend.

    (Redis, Redis)  (RabbitMQ, Redis)  (RabbitMQ, PostgreSQL db+)
    (Redis, django-celery-results on PostgreSQL)  (Redis, rpc://: events only)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from kubernetes import client

from celery_operator.api import PERIODIC_PLURAL, SCHEDULED_PLURAL
from celery_operator.devstack import CeleryWorker, KubeEnv, RabbitMQServer, RedisServer
from celery_operator.devstack.demo_app import read_executions
from celery_operator.devstack.operatorproc import OperatorProcess
from celery_operator.devstack.postgresserver import PostgresServer

from .conftest import POSTGRES_PASSWORD, Tasks, holds_for, postgres_url, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.serial]

# Redis databases of the matrix (the session's broker and backend use 0 and 1).
BROKER_DB, BACKEND_DB = 6, 7
DJANGO_APP = "tests.integration.django_worker_app"
COMBINATIONS = {
    "redis-redis": ("redis", "redis"),
    "amqp-redis": ("amqp", "redis"),
    "amqp-postgresql": ("amqp", "db+"),
    "redis-django": ("redis", "django-db+"),
    "redis-rpc": ("redis", "rpc"),
}


@dataclass
class Stack:
    name: str
    broker_url: str
    backend_url: str
    worker: CeleryWorker
    executions: Path
    tasks: Tasks
    periodic: Tasks
    workdir: Path
    kubeconfig: Path
    namespace: str
    started: list[OperatorProcess] = field(default_factory=list)

    @property
    def operator(self) -> OperatorProcess:
        """The operator started last."""
        return self.started[-1]

    @property
    def results(self) -> bool:
        """The backend keeps results the operator reads (rpc:// does not)."""
        return not self.backend_url.startswith("rpc")

    def runs(self) -> dict[str, int]:
        return dict(read_executions(self.executions).runs)

    def start_operator(self) -> OperatorProcess:
        operator = OperatorProcess(
            self.kubeconfig, self.broker_url, self.backend_url, workdir=self.workdir,
            extra_args=["--namespace", self.namespace, "--claim-lease", "5"],
        ).start()
        self.started.append(operator)
        return operator


@pytest.fixture(scope="module")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQServer]:
    server = RabbitMQServer(tmp_path_factory.mktemp("rabbitmq")).start()
    try:
        yield server
    finally:
        server.stop()


def _urls(request: pytest.FixtureRequest, broker: str, results: str) -> tuple[str, str]:
    redis: RedisServer = request.getfixturevalue("redis_server")
    if broker == "amqp":
        broker_url = request.getfixturevalue("rabbitmq").url
    else:
        broker_url = redis.db_url(BROKER_DB)
    if results == "redis":
        backend_url = redis.db_url(BACKEND_DB)
    elif results == "rpc":
        backend_url = "rpc://"
    else:
        postgres: PostgresServer = request.getfixturevalue("postgres")
        backend_url = postgres_url(postgres, results)
    return broker_url, backend_url


# Each scenario's objects, created at stack start (names are the tests' keys).
SCHEDULED: dict[str, dict[str, Any]] = {
    "add": {"task": {"name": "demo.add", "args": [2, 3]}},
    "flaky": {"task": {"name": "demo.fail", "args": ["boom"]},
              "retry": {"limit": 1, "backoff": {"initialSeconds": 1, "maxSeconds": 1}}},
    "long": {"task": {"name": "demo.sleep", "args": [60]}},
    "stale": {"task": {"name": "demo.add", "args": [1, 2], "queue": "nobody-consumes"},
              "expires": 3},
}
PERIODIC = {"every3s": {"schedule": {"interval": "3s"},
                        "task": {"name": "demo.add", "args": [2, 2]}}}


@pytest.fixture(scope="module", params=list(COMBINATIONS))
def stack(
    request: pytest.FixtureRequest, kube: KubeEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    broker_url, backend_url = _urls(request, *COMBINATIONS[request.param])
    workdir = tmp_path_factory.mktemp(f"matrix-{request.param}")
    executions = workdir / "executions.jsonl"
    worker = CeleryWorker(
        broker_url, backend_url, workdir=workdir, execution_log=executions, concurrency=2,
        app=DJANGO_APP if backend_url.startswith("django-db") else
        "celery_operator.devstack.demo_app",
    ).start()
    namespace = f"m-{request.param}-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", namespace)
    api = client.CustomObjectsApi(kube.api_client())
    stack = Stack(
        request.param, broker_url, backend_url, worker, executions,
        Tasks(api, namespace, SCHEDULED_PLURAL), Tasks(api, namespace, PERIODIC_PLURAL),
        workdir, kube.kubeconfig, namespace,
    )
    try:
        stack.start_operator()
        for name, spec in SCHEDULED.items():
            stack.tasks.create(name, spec)
        for name, spec in PERIODIC.items():
            stack.periodic.create(name, spec)
        yield stack
    finally:
        for operator in stack.started:
            operator.stop()
        worker.stop()


def test_a_task_is_dispatched_and_its_result_read(stack: Stack) -> None:
    obj = stack.tasks.wait_phase("add", "Succeeded", timeout=60)
    status = obj["status"]
    assert status["worker"] == stack.worker.name
    if stack.results:
        assert status["result"] == 5
    else:
        assert "result" not in status
    wait_for(lambda: stack.runs().get(status["taskId"]) == 1, 10, "its run in the log")


def test_a_failure_is_retried_by_policy_and_reported(stack: Stack) -> None:
    obj = stack.tasks.wait_phase("flaky", "Failed", timeout=60)
    status = obj["status"]
    assert (status["error"]["type"], status["error"]["message"]) == ("ValueError", "boom")
    assert "Traceback" in status["error"].get("traceback", "")
    ids = [a["taskId"] for a in status["attempts"]]
    assert [a["attempt"] for a in status["attempts"]] == [1, 2] and len(set(ids)) == 2
    wait_for(lambda: all(stack.runs().get(i) == 1 for i in ids), 10, "each attempt ran once")


def test_a_running_task_is_revoked(stack: Stack) -> None:
    stack.tasks.wait_phase("long", "Started", timeout=60)
    stack.tasks.patch_spec("long", {"revoke": {"terminate": True, "signal": "SIGKILL"}})
    obj = stack.tasks.wait_phase("long", "Revoked", timeout=30)
    assert stack.runs().get(obj["status"]["taskId"]) == 1  # it had started, once


def test_a_queued_task_nobody_takes_expires(stack: Stack) -> None:
    obj = stack.tasks.wait_phase("stale", "Expired", timeout=60)
    assert "while waiting in the queue" in obj["status"]["conditions"][0]["message"]
    assert obj["status"]["taskId"] not in stack.runs()


def test_a_periodic_tasks_child_runs_once(stack: Stack) -> None:
    def children() -> list[dict[str, Any]]:
        return [c for c in stack.tasks.list()
                if c["metadata"]["name"].startswith("every3s-")
                and (c.get("status") or {}).get("phase") == "Succeeded"]

    done = wait_for(children, 60, "a child Succeeded")
    assert [c["status"].get("result") for c in done] == [4 if stack.results else None] * len(
        done)
    ids = [c["status"]["taskId"] for c in done]
    wait_for(lambda: all(stack.runs().get(i) == 1 for i in ids), 10, "each child ran once")


def test_a_task_due_while_the_operator_was_killed_runs_once_after_it_restarts(
    stack: Stack,
) -> None:
    stack.tasks.create("restart", {"task": {"name": "demo.add", "args": [20, 1]},
                                   "countdown": 4})
    stack.tasks.wait_phase("restart", "Scheduled", timeout=30)
    stack.operator.kill()
    stack.start_operator()
    obj = stack.tasks.wait_phase("restart", "Succeeded", timeout=60)
    if stack.results:
        assert obj["status"]["result"] == 21
    task_id = obj["status"]["taskId"]
    wait_for(lambda: stack.runs().get(task_id) == 1, 10, "its run in the log")
    holds_for(lambda: stack.runs().get(task_id) == 1, 2, "it ran exactly once")


CHAOS_TASKS = 200


def _count(tasks: Tasks, phase: str) -> int:
    return sum((i.get("status") or {}).get("phase") == phase for i in tasks.list())


@pytest.mark.parametrize("broker", ["redis", "amqp"])
def test_chaos_with_200_tasks_in_flight_loses_nothing_and_runs_nothing_twice(
    broker: str, kube: KubeEnv, postgres: PostgresServer, tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """While 200 tasks come due over ~20 s: the operator is SIGKILLed, the broker
    restarted with its data (RabbitMQ; the test Redis keeps none), then restarted
    empty, then the result database restarted. Every task ends Succeeded (lost 0) and,
    with the run-once guard (claims in PostgreSQL), every id ran exactly once."""
    if broker == "amqp":
        rabbitmq: RabbitMQServer = request.getfixturevalue("rabbitmq")
        broker_url = rabbitmq.url
    else:  # its own: restarting the session's Redis would touch every other test's data
        redis = RedisServer(tmp_path / "redis").start()
        request.addfinalizer(redis.stop)
        broker_url = redis.url
    backend_url = postgres_url(postgres)
    queue = f"chaos-{uuid.uuid4().hex[:8]}"
    executions = tmp_path / "executions.jsonl"
    workers: list[CeleryWorker] = []

    def new_worker() -> CeleryWorker:
        workers.append(CeleryWorker(broker_url, backend_url, queues=(queue,), concurrency=8,
                                    workdir=tmp_path, execution_log=executions,
                                    extra_env={"DEMO_RUN_ONCE": "1"}))
        return workers[-1]

    worker = new_worker()
    namespace = f"chaos-{broker}-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", namespace)
    api = client.CustomObjectsApi(kube.api_client())
    tasks = Tasks(api, namespace, SCHEDULED_PLURAL)
    stack = Stack(
        f"chaos-{broker}", broker_url, backend_url, worker, executions, tasks,
        Tasks(api, namespace, PERIODIC_PLURAL), tmp_path, kube.kubeconfig, namespace,
    )
    worker.start()
    try:
        stack.start_operator()
        for i in range(CHAOS_TASKS):
            tasks.create(f"t{i:03d}", {"task": {"name": "demo.add", "args": [i, 1],
                                                "queue": queue}, "countdown": 4 + i % 20})

        def progressed(succeeded: int) -> bool:
            # As Kubernetes would: a worker that exited (Celery may stop on "Unrecoverable
            # error" when its broker vanishes) is replaced; it shares the execution log.
            if not workers[-1].process.running():
                new_worker().start()
            return _count(tasks, "Succeeded") >= succeeded

        def at(succeeded: int, timeout: float = 90) -> None:
            wait_for(lambda: progressed(succeeded), timeout, f"{succeeded} Succeeded")

        at(30)
        stack.operator.kill()
        stack.start_operator()
        if broker == "amqp":
            at(70)
            rabbitmq.restart()
            at(110)
            rabbitmq.restart_empty()
        else:
            at(110)
            redis.restart_empty()
        at(150)
        postgres.restart()
        at(CHAOS_TASKS, timeout=180)
        items = tasks.list()
    finally:
        for operator in stack.started:
            operator.stop()
        for each in workers:
            each.stop()
    ids = sorted(str(i["status"]["taskId"]) for i in items)
    assert all(i["status"]["result"] == i["spec"]["task"]["args"][0] + 1 for i in items)
    seen = read_executions(executions)
    print(f"chaos {broker}: {sum(seen.dropped.values())} deliveries dropped by the guard, "
          f"{len(workers)} worker processes")
    assert dict(seen.runs) == dict.fromkeys(ids, 1)  # lost 0, duplicated 0


def test_a_result_table_missing_at_start_is_logged_counted_and_read_once_it_exists(
    kube: KubeEnv, postgres: PostgresServer, redis_server: RedisServer, tmp_path: Path,
) -> None:
    """A database no worker has written to yet has no celery_taskmeta: the operator
    starts anyway, says so in one line with the password hidden, counts the failed reads
    and keeps the task; once a worker stored its first result, the task is read."""
    database = f"fresh_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(postgres_url(postgres, "", database="postgres"),
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {database}"))
    admin.dispose()
    broker_url = redis_server.db_url(BROKER_DB)
    backend_url = postgres_url(postgres, database=database)
    queue = f"fresh-{uuid.uuid4().hex[:8]}"
    namespace = f"fresh-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", namespace)
    tasks = Tasks(client.CustomObjectsApi(kube.api_client()), namespace, SCHEDULED_PLURAL)
    operator = OperatorProcess(kube.kubeconfig, broker_url, backend_url, workdir=tmp_path,
                               extra_args=["--namespace", namespace]).start()
    worker = CeleryWorker(broker_url, backend_url, queues=(queue,), workdir=tmp_path,
                          concurrency=1, execution_log=tmp_path / "executions.jsonl")
    try:
        tasks.create("first", {"task": {"name": "demo.add", "args": [2, 2], "queue": queue}})
        tasks.wait_phase("first", "Queued", timeout=30)
        missing = "table celery_taskmeta does not exist"
        wait_for(lambda: missing in operator.log_tail(200), 30, "the missing table logged")
        assert wait_for(lambda: read_failures(operator), 10, "a counted failure") >= 1
        worker.start()
        obj = tasks.wait_phase("first", "Succeeded", timeout=90)
        assert obj["status"]["result"] == 4
        log = (tmp_path / f"{operator.name}.log").read_text()
    finally:
        operator.stop()
        worker.stop()
    # The read failure names the app and the cause (status-safe: no hosts); the start
    # line names the backend, password hidden.
    assert "reading the result backend of app default failed" in next(
        x for x in log.splitlines() if missing in x)
    assert f"results db+postgresql+psycopg://celery:***@127.0.0.1:{postgres.port}/{database}" \
        in log
    for secret in (POSTGRES_PASSWORD, quote(POSTGRES_PASSWORD, safe="")):
        assert secret not in log


def read_failures(operator: OperatorProcess) -> float:
    """celery_operator_result_read_failures_total, all apps (here: the flags' one)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in operator.metrics().splitlines()
               if line.startswith("celery_operator_result_read_failures_total{"))
