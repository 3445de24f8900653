"""Integration fixtures: the operator as a real process, and helpers to watch objects."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis as redis_lib
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from celery_operator.api import GROUP, PERIODIC_PLURAL, SCHEDULED_PLURAL, VERSION
from celery_operator.devstack import KubeEnv, RedisServer
from celery_operator.devstack.operatorproc import OperatorProcess
from celery_operator.devstack.postgresserver import PostgresServer
from celery_operator.dispatch import sqlstore

from ..conftest import BROKER_DB
from .broker_tap import BrokerTap
from .history import StatusHistory

StartOperator = Callable[..., OperatorProcess]

# The result database's password: every character a URL must escape ('@', ':', '/').
POSTGRES_PASSWORD = "p@ss:w/rd"


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One PostgreSQL for the result-backend and guard tests (each uses its own ids)."""
    server = PostgresServer(tmp_path_factory.mktemp("postgres"), password=POSTGRES_PASSWORD)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def postgres_url(
    server: PostgresServer, prefix: str = "db+", *, password: str = POSTGRES_PASSWORD,
    port: int | None = None, database: str | None = None,
) -> str:
    """`prefix`postgresql+psycopg://… (the driver named: Celery's own database backend
    would take psycopg2 otherwise), the password percent-encoded."""
    return (f"{prefix}postgresql+psycopg://{server.user}:{quote(password, safe='')}@"
            f"127.0.0.1:{port or server.port}/{database or server.database}")


def fresh_database(server: PostgresServer, prefix: str) -> str:
    """A new, empty database on `server` (named `prefix`_<random>): its db+ URL."""
    database = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = sqlstore.create_engine(postgres_url(server)).execution_options(
        isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {database}")
    admin.dispose()
    return postgres_url(server, database=database)


@pytest.fixture
def start_operator(
    kube: KubeEnv, namespace: str, broker_url: str, backend_url: str, tmp_path: Path
) -> Iterator[StartOperator]:
    """Start `celery-operator run` watching this test's namespace; stopped after the test."""
    started: list[OperatorProcess] = []

    def start(*extra_args: str, **kwargs: Any) -> OperatorProcess:
        proc = OperatorProcess(
            kube.kubeconfig,
            kwargs.pop("broker", broker_url),
            kwargs.pop("backend", backend_url),
            workdir=tmp_path,
            extra_args=["--namespace", namespace, "--claim-lease", "5", *extra_args],
            **kwargs,
        )
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def broker_tap(redis_server: RedisServer) -> Iterator[BrokerTap]:
    """Counts every message the test broker receives, per task id, across restarts."""
    tap = BrokerTap("127.0.0.1", redis_server.port, db=BROKER_DB).start()
    try:
        yield tap
    finally:
        tap.stop()


@pytest.fixture
def status_history(kube: KubeEnv, namespace: str) -> Iterator[StatusHistory]:
    """Every status this namespace's ScheduledTasks went through (claims, broker run ids)."""
    history = StatusHistory(kube.api_client(), namespace).start()
    try:
        yield history
    finally:
        history.stop()


@pytest.fixture
def custom(kube: KubeEnv) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube.api_client())


@pytest.fixture
def core(kube: KubeEnv) -> client.CoreV1Api:
    return client.CoreV1Api(kube.api_client())


@pytest.fixture
def results(backend_url: str) -> redis_lib.Redis:
    return redis_lib.Redis.from_url(backend_url)


class Tasks:
    """ScheduledTasks of one namespace: create, read, wait for a phase."""

    def __init__(self, api: client.CustomObjectsApi, namespace: str, plural: str) -> None:
        self.api = api
        self.namespace = namespace
        self.plural = plural

    def create(self, name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
        kind = "ScheduledTask" if self.plural == SCHEDULED_PLURAL else "PeriodicTask"
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {"name": name, "namespace": self.namespace, **meta},
            "spec": spec,
        }
        obj: dict[str, Any] = self.api.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, self.plural, body
        )
        return obj

    def get(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.api.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, self.plural, name
        )
        return obj

    def list(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.api.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, self.plural
        )["items"]
        return items

    def patch_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        obj: dict[str, Any] = self.api.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, self.plural, name, {"spec": spec}
        )
        return obj

    def delete(self, name: str) -> None:
        self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, self.plural, name)

    def wait_phase(
        self, name: str, phases: str | Sequence[str], timeout: float = 60.0
    ) -> dict[str, Any]:
        wanted = {phases} if isinstance(phases, str) else set(phases)
        deadline = time.monotonic() + timeout
        obj: dict[str, Any] = {}
        while time.monotonic() < deadline:
            obj = self.get(name)
            if (obj.get("status") or {}).get("phase") in wanted:
                return obj
            time.sleep(0.2)
        raise AssertionError(
            f"{name} did not reach {sorted(wanted)} in {timeout} s; status: {obj.get('status')}"
        )

    def wait_all(
        self, phases: str | Sequence[str], count: int, timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        wanted = {phases} if isinstance(phases, str) else set(phases)
        deadline = time.monotonic() + timeout
        items: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            items = self.list()
            done = [i for i in items if (i.get("status") or {}).get("phase") in wanted]
            if len(done) >= count:
                return items
            time.sleep(0.5)
        phases_seen: dict[str, int] = {}
        for i in items:
            p = str((i.get("status") or {}).get("phase"))
            phases_seen[p] = phases_seen.get(p, 0) + 1
        raise AssertionError(f"not all {count} reached {sorted(wanted)}: {phases_seen}")


@pytest.fixture
def tasks(custom: client.CustomObjectsApi, namespace: str) -> Tasks:
    return Tasks(custom, namespace, SCHEDULED_PLURAL)


@pytest.fixture
def periodic(custom: client.CustomObjectsApi, namespace: str) -> Tasks:
    return Tasks(custom, namespace, PERIODIC_PLURAL)


def events_for(core: client.CoreV1Api, namespace: str, name: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events about one object, oldest first."""
    items = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    return [(e.type, e.reason, e.message) for e in items.items]


def wait_for_events(
    core: client.CoreV1Api,
    namespace: str,
    name: str,
    done: Callable[[list[tuple[str, str, str]]], bool],
    timeout: float = 10.0,
) -> list[tuple[str, str, str]]:
    """Events are posted after the status write they describe: poll until `done` holds."""
    deadline = time.monotonic() + timeout
    events = events_for(core, namespace, name)
    while not done(events) and time.monotonic() < deadline:
        time.sleep(0.2)
        events = events_for(core, namespace, name)
    return events


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `predicate` until it returns something truthy, and return that; AssertionError
    naming `what` (and the last value seen) after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} (last seen: {last!r})")


def metric_sum(operator: OperatorProcess, prefix: str) -> float:
    """The sum of an operator's metric samples whose line starts with `prefix`."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in operator.metrics().splitlines()
               if line.startswith(prefix))


def wait_dispatched(operator: OperatorProcess, count: int, timeout: float = 20.0) -> None:
    """Until `operator` has published `count` messages (its dispatched counter): the
    sign a message is out, since Queued is written only for a task still waiting 2 s
    past its due time."""
    wait_for(lambda: metric_sum(operator, "celery_operator_dispatched_total{") >= count,
             timeout, f"{count} messages published")


def holds_for(predicate: Callable[[], Any], seconds: float, what: str) -> None:
    """Something must NOT happen: check it all along a window, fail at the first miss."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), f"no longer true: {what}"
        time.sleep(0.25)
    assert predicate(), f"no longer true: {what}"


def gone(tasks: Tasks, name: str) -> bool:
    """The object no longer exists (404)."""
    try:
        tasks.get(name)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False

