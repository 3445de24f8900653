"""CeleryApp runtime against the real API server and real Redis servers: the AppDirectory
(resolution, Secret rotation, deletion, broken apps) and the app status writer (Ready,
workers, queues, Events). The directory is driven directly with a real KubeClient and
the bodies the API server returns: no operator process is needed."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from kubernetes import client

from celery_operator import metrics
from celery_operator.api import GROUP, VERSION, TaskCall
from celery_operator.api.apps import AppRef
from celery_operator.api.names import (
    CELERYAPP_KIND,
    CELERYAPP_PLURAL,
    CLUSTER_CELERYAPP_KIND,
    CLUSTER_CELERYAPP_PLURAL,
)
from celery_operator.controllers.appresolve import AppProblem, ResolvedApp, app_label
from celery_operator.controllers.apps import AppDirectory
from celery_operator.controllers.appstatus import AppStatusWriter
from celery_operator.devstack import CeleryWorker, KubeEnv, RedisServer
from celery_operator.dispatch.backend import CeleryBackend
from celery_operator.dispatch.publisher import Publication
from celery_operator.dispatch.registry import BackendRegistry, ConnectionSet
from celery_operator.kube.client import KubeClient

from .conftest import wait_for

pytestmark = pytest.mark.integration

PASSWORD = "p@ss:w/rd"  # every character a URL cares about
ENCODED = "p%40ss%3Aw%2Frd"
SECRETS = (PASSWORD, ENCODED)


class Clock:
    """The directory's clock: tests move it past the 30 s Secret refresh at once."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorded(CeleryBackend):
    """A real backend that remembers being closed."""

    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


def opened(conn: ConnectionSet) -> Recorded:
    return Recorded(conn.broker_url, conn.result_backend_url, dict(conn.transport_options))


def gauge(metric: Any, **labels: str) -> float | None:
    """The value of one series of a gauge in this process's registry (None: no series)."""
    for family in metric.collect():
        for sample in family.samples:
            if sample.labels == labels:
                return float(sample.value)
    return None


class Cluster:
    """Namespaces, Secrets and apps of one test, removed after it (cluster apps too)."""

    def __init__(self, kube: KubeEnv) -> None:
        api = kube.api_client()
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.kube_client = KubeClient(api)
        self.tag = uuid.uuid4().hex[:8]
        self.cluster_apps: list[str] = []

    def namespace(self, prefix: str, **labels: str) -> str:
        name = f"{prefix}-{self.tag}"
        self.core.create_namespace(client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={"test": self.tag, **labels})))
        return name

    def secret(self, namespace: str, name: str, **data: str) -> None:
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(name=name, namespace=namespace),
            data={k: base64.b64encode(v.encode()).decode() for k, v in data.items()})
        try:
            self.core.create_namespaced_secret(namespace, body)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            self.core.replace_namespaced_secret(name, namespace, body)

    def app(self, namespace: str | None, name: str, spec: dict[str, Any],
            **annotations: str) -> dict[str, Any]:
        kind = CELERYAPP_KIND if namespace else CLUSTER_CELERYAPP_KIND
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind,
                "metadata": {"name": name, "annotations": annotations}, "spec": spec}
        if namespace is None:
            self.cluster_apps.append(name)
            made = self.custom.create_cluster_custom_object(
                GROUP, VERSION, CLUSTER_CELERYAPP_PLURAL, body)
        else:
            body["metadata"]["namespace"] = namespace
            made = self.custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, CELERYAPP_PLURAL, body)
        return dict(made)

    def get_app(self, namespace: str | None, name: str) -> dict[str, Any]:
        if namespace is None:
            return dict(self.custom.get_cluster_custom_object(
                GROUP, VERSION, CLUSTER_CELERYAPP_PLURAL, name))
        return dict(self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, CELERYAPP_PLURAL, name))

    def patch_app(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, CELERYAPP_PLURAL,
                                                   name, {"spec": spec})

    def delete_app(self, namespace: str | None, name: str) -> None:
        if namespace is None:
            self.custom.delete_cluster_custom_object(GROUP, VERSION, CLUSTER_CELERYAPP_PLURAL,
                                                     name)
        else:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace,
                                                        CELERYAPP_PLURAL, name)

    def events(self, namespace: str, name: str) -> list[tuple[str, str, str]]:
        items = self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name}").items
        return [(e.type, e.reason, e.message) for e in items]

    def cleanup(self) -> None:
        for name in self.cluster_apps:
            with contextlib.suppress(client.ApiException):
                self.delete_app(None, name)


@pytest.fixture
def cluster(kube: KubeEnv) -> Iterator[Cluster]:
    made = Cluster(kube)
    try:
        yield made
    finally:
        made.cleanup()


def _redis(workdir: Path) -> Iterator[RedisServer]:
    workdir.mkdir(parents=True, exist_ok=True)
    server = RedisServer(workdir).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_a(tmp_path: Path) -> Iterator[RedisServer]:
    """Two brokers of the test's own: they get passwords and are stopped."""
    yield from _redis(tmp_path / "redis-a")


@pytest.fixture
def redis_b(tmp_path: Path) -> Iterator[RedisServer]:
    yield from _redis(tmp_path / "redis-b")


def run_id(server: RedisServer, password: str | None = None) -> str:
    admin = redis_lib.Redis(host="127.0.0.1", port=server.port, password=password)
    try:
        return str(admin.info("server")["run_id"])
    finally:
        admin.close()


def set_password(server: RedisServer, new: str, old: str | None = None) -> None:
    admin = redis_lib.Redis(host="127.0.0.1", port=server.port, password=old)
    try:
        admin.config_set("requirepass", new)
    finally:
        admin.close()


def app_spec(secret: str, **extra: Any) -> dict[str, Any]:
    return {"broker": {"secretKeyRef": {"name": secret, "key": "broker"}},
            "resultBackend": {"secretKeyRef": {"name": secret, "key": "backend"}}, **extra}


def urls(server: RedisServer, password: str | None = None) -> dict[str, str]:
    auth = f":{password}@" if password else ""
    base = f"redis://{auth}127.0.0.1:{server.port}"
    return {"broker": f"{base}/0", "backend": f"{base}/1"}


def directory_for(cluster: Cluster, operator_ns: str, clock: Clock,
                  flags: ConnectionSet | None = None) -> tuple[AppDirectory, BackendRegistry]:
    registry = BackendRegistry(opened)
    directory = AppDirectory(cluster.kube_client, registry, operator_namespace=operator_ns,
                             flags=flags, clock=clock)
    return directory, registry


def test_tasks_resolve_to_their_namespaces_default_the_cluster_default_or_the_flags(
    cluster: Cluster, redis_a: RedisServer, redis_b: RedisServer,
) -> None:
    team_a = cluster.namespace("team-a", team="a")
    team_b = cluster.namespace("team-b", team="b")
    team_c = cluster.namespace("team-c", team="c")
    ops = cluster.namespace("ops")
    cluster.secret(team_a, "broker", **urls(redis_a))
    cluster.secret(ops, "shared", **urls(redis_b))
    cluster.app(team_a, "default", app_spec("broker", policy={"allowedTasks": ["reports.*"]}))
    shared = f"shared-{cluster.tag}"
    cluster.app(None, shared, app_spec("shared", namespaceSelector={
        "matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]},
                             {"key": "test", "operator": "In", "values": [cluster.tag]}]}),
        **{"celeryoperator.dev/default-app": "true"})
    clock = Clock()
    directory, registry = directory_for(cluster, ops, clock)
    changes: list[str] = []
    directory.subscribe(changes.append)
    directory.load([team_a, team_b, team_c])
    assert f"CeleryApp/{team_a}/default" in changes and f"ClusterCeleryApp/{shared}" in changes

    own = directory.resolve(team_a, None)
    assert isinstance(own, ResolvedApp) and own.key == f"CeleryApp/{team_a}/default"
    assert own.label == f"{team_a}/default" and own.policy.allowed_tasks == ("reports.*",)
    assert own.backend.broker_run_id() == run_id(redis_a)  # really that app's broker
    via_cluster = directory.resolve(team_b, None)
    assert isinstance(via_cluster, ResolvedApp) and via_cluster.label == f"cluster/{shared}"
    assert via_cluster.backend.broker_run_id() == run_id(redis_b)
    # team-c: the cluster default does not admit it, and there are no flags.
    nothing = directory.resolve(team_c, None)
    assert isinstance(nothing, AppProblem) and nothing.reason == "AppNotFound"
    assert f'CeleryApp "default" in namespace "{team_c}"' in nothing.message
    assert directory.resolve(team_c, AppRef(CLUSTER_CELERYAPP_KIND, shared)) == AppProblem(
        "AppNotAllowed", f'spec.app: ClusterCeleryApp "{shared}" may not be used from '
        f'namespace "{team_c}" (its namespaceSelector does not select it)')
    assert directory.resolve(team_b, AppRef(CELERYAPP_KIND, "default")) == AppProblem(
        "AppNotFound", f'spec.app: CeleryApp "default" not found in namespace "{team_b}"')
    assert {a.key for a in directory.apps()} == {own.key, via_cluster.key}
    assert registry.open_count() == 2

    # With flags, team-c falls back to them ("flags", label "default").
    flags = ConnectionSet.of(urls(redis_a)["broker"], urls(redis_a)["backend"])
    with_flags, flags_registry = directory_for(cluster, ops, clock, flags=flags)
    with_flags.load([team_a, team_b, team_c])
    fallback = with_flags.resolve(team_c, None)
    assert isinstance(fallback, ResolvedApp) and (fallback.key, fallback.label) == (
        "flags", "default")
    # team-a's app has the flags' very connection set: one backend for both.
    assert with_flags.resolve(team_a, None).backend is fallback.backend  # type: ignore[union-attr]
    assert flags_registry.open_count() == 2
    registry.close_all()
    flags_registry.close_all()


def connections(server: RedisServer, password: str | None = None) -> int:
    """Clients connected to the server, not counting the one asking."""
    admin = redis_lib.Redis(host="127.0.0.1", port=server.port, password=password)
    try:
        return len(admin.client_list()) - 1
    finally:
        admin.close()


def test_a_rotated_password_swaps_the_backend_and_a_deleted_app_closes_its_connections(
    cluster: Cluster, redis_a: RedisServer, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    team = cluster.namespace("rot", team="a")
    set_password(redis_a, "old-secret")
    cluster.secret(team, "broker", **urls(redis_a, "old-secret"))
    cluster.app(team, "default", app_spec("broker"))
    clock = Clock()
    directory, registry = directory_for(cluster, team, clock)
    changes: list[str] = []
    directory.subscribe(changes.append)
    directory.load([team])
    key = f"CeleryApp/{team}/default"
    old = directory.resolve(team, None)
    assert isinstance(old, ResolvedApp)
    assert old.backend.broker_run_id() == run_id(redis_a, "old-secret")

    # Rotate: the server takes the new password, then the Secret gets it.
    set_password(redis_a, PASSWORD, "old-secret")
    cluster.secret(team, "broker", **urls(redis_a, ENCODED))
    changes.clear()
    directory.refresh()  # not due yet: nothing is read
    assert directory.resolve(team, None) is old and changes == []
    clock.now += 31
    directory.refresh()
    new = directory.resolve(team, None)
    assert isinstance(new, ResolvedApp) and new.backend is not old.backend
    assert changes == [key]
    assert new.backend.broker_run_id() == run_id(redis_a, PASSWORD)
    new.backend.check_result_backend()
    assert isinstance(old.backend, Recorded) and old.backend.closed
    assert registry.open_count() == 1

    # A spec change is read at once: a tighter policy keeps the backend; other Secrets
    # (here: other databases) give another backend and close the old one.
    changes.clear()
    cluster.patch_app(team, "default", {"policy": {"allowedTasks": ["reports.*"]}})
    directory.observe(CELERYAPP_KIND, "MODIFIED", cluster.get_app(team, "default"))
    tighter = directory.resolve(team, None)
    assert isinstance(tighter, ResolvedApp) and tighter.backend is new.backend
    assert tighter.policy.allowed_tasks == ("reports.*",) and changes == [key]
    cluster.secret(team, "other", broker=f"redis://:{ENCODED}@127.0.0.1:{redis_a.port}/2",
                   backend=f"redis://:{ENCODED}@127.0.0.1:{redis_a.port}/3")
    cluster.patch_app(team, "default", app_spec("other"))
    body = cluster.get_app(team, "default")
    directory.observe(CELERYAPP_KIND, "MODIFIED", body)
    directory.observe(CELERYAPP_KIND, "MODIFIED", body)  # the same again: nothing to do
    moved = directory.resolve(team, None)
    assert isinstance(moved, ResolvedApp) and moved.backend is not new.backend
    assert changes == [key, key] and isinstance(new.backend, Recorded) and new.backend.closed
    moved.backend.check_result_backend()
    new = moved

    # Delete: the backend is closed, its connections to Redis are gone, subscribers hear.
    new.backend.consumed_queues()  # a broadcast too: kombu's own connections
    assert connections(redis_a, PASSWORD) >= 1
    body = cluster.get_app(team, "default")
    cluster.delete_app(team, "default")
    changes.clear()
    directory.observe(CELERYAPP_KIND, "DELETED", body)
    assert changes == [key]
    assert isinstance(new.backend, Recorded) and new.backend.closed
    assert registry.open_count() == 0
    wait_for(lambda: connections(redis_a, PASSWORD) == 0, 30.0, "the app's connections closed")
    gone = directory.resolve(team, None)
    assert isinstance(gone, AppProblem) and gone.reason == "AppNotFound"
    logged = caplog.text
    assert not any(secret in logged for secret in (*SECRETS, "old-secret")), logged


def test_a_broken_app_says_why_on_its_status_and_recovers_when_fixed(
    cluster: Cluster, redis_a: RedisServer, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    team = cluster.namespace("broken", team="a")
    ops = cluster.namespace("ops")
    cluster.app(team, "missing", app_spec("nope"))
    cluster.secret(team, "nokey", broker=urls(redis_a)["broker"])
    cluster.app(team, "nokey", app_spec("nokey"))
    unencoded = f"redis://:{PASSWORD}@127.0.0.1:{redis_a.port}/0"
    cluster.secret(team, "badurl", broker=unencoded, backend=urls(redis_a)["backend"])
    cluster.app(team, "badurl", app_spec("badurl"))
    lonely = f"lonely-{cluster.tag}"
    cluster.app(None, lonely, app_spec("absent", namespaceSelector={}))
    clock = Clock()
    directory, registry = directory_for(cluster, ops, clock)
    directory.load([team])
    writer = AppStatusWriter(directory, cluster.kube_client, interval=0.2)

    expected = {
        (team, "missing"): ("SecretMissing",
                            f'spec.broker.secretKeyRef.name: Secret "nope" not found in '
                            f'namespace "{team}"'),
        (team, "nokey"): ("SecretKeyMissing",
                          f'spec.resultBackend.secretKeyRef.key: Secret "nokey" in namespace '
                          f'"{team}" has no key "backend" (or its value is not UTF-8 text)'),
        (team, "badurl"): ("InvalidURL",
                           f'spec.broker.secretKeyRef: key "broker" of Secret "badurl" in '
                           f'namespace "{team}": the broker URL does not parse (the port is '
                           f"not a number)"),
        (None, lonely): ("SecretMissing",
                         f'spec.broker.secretKeyRef.name: Secret "absent" not found in '
                         f'namespace "{ops}"'),
    }
    for (ns, name), (reason, message) in expected.items():
        kind = CELERYAPP_KIND if ns else CLUSTER_CELERYAPP_KIND
        key = f"{kind}/{ns}/{name}" if ns else f"{kind}/{name}"
        assert writer.update(key) is False
        status = cluster.get_app(ns, name)["status"]
        ready = status["conditions"][0]
        assert (ready["type"], ready["status"], ready["reason"], ready["message"]) == (
            "Ready", "False", reason, message)
        assert status["lastError"] == message and status["observedGeneration"] == 1
        events = wait_for(lambda ns=ns, name=name: [
            e for e in cluster.events(ns or "default", name) if e[1] == "AppNotReady"],
                30.0, "the Warning Event")
        assert events == [("Warning", "AppNotReady", message)]
        # A task naming it is told the same, from its own field.
        answer = directory.resolve(team, AppRef(kind, name))
        assert isinstance(answer, AppProblem) and answer.reason == reason
        assert answer.message.endswith(f"cannot be used: {message}")
        # Nothing changed: a second pass writes nothing and posts nothing.
        rv = cluster.get_app(ns, name)["metadata"]["resourceVersion"]
        assert writer.update(key) is False
        assert cluster.get_app(ns, name)["metadata"]["resourceVersion"] == rv
    assert registry.open_count() == 0

    # Fixed: the key appears; the next re-read (with backoff) makes the app usable.
    cluster.secret(team, "nokey", **urls(redis_a))
    clock.now += 31
    directory.refresh()
    fixed = directory.resolve(team, AppRef(CELERYAPP_KIND, "nokey"))
    assert isinstance(fixed, ResolvedApp)
    assert writer.update(f"{CELERYAPP_KIND}/{team}/nokey") is True
    ready = cluster.get_app(team, "nokey")["status"]["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("True", "Reachable")
    wait_for(lambda: ("Normal", "AppReady",
             "broker and result backend answer") in cluster.events(team, "nokey"),
                 30.0, "the Normal Event")
    text = json.dumps([cluster.get_app(ns, n) for ns, n in expected]) + caplog.text
    text += json.dumps([cluster.events(ns or "default", n) for ns, n in expected])
    assert PASSWORD not in text and ENCODED not in text
    registry.close_all()


def test_status_shows_ready_workers_queue_depth_and_task_counts_and_follows_the_broker(
    cluster: Cluster, redis_a: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    team = cluster.namespace("status", team="a")
    set_password(redis_a, PASSWORD)
    cluster.secret(team, "broker", **urls(redis_a, ENCODED))
    cluster.app(team, "default", app_spec("broker", defaults={"queue": "reports"},
                                          policy={"allowedQueues": ["reports", "idle", "x-*"]}))
    clock = Clock()
    directory, registry = directory_for(cluster, team, clock)
    directory.load([team])
    key = f"CeleryApp/{team}/default"
    app = directory.resolve(team, None)
    assert isinstance(app, ResolvedApp)
    worker_urls = urls(redis_a, ENCODED)
    worker = CeleryWorker(worker_urls["broker"], worker_urls["backend"],
                          queues=("reports", "bulk"), concurrency=1,
                          workdir=tmp_path / "worker").start()
    try:
        app.backend.publish(Publication(TaskCall(name="demo.add", args=(1, 2), queue="idle"),
                                        task_id=f"idle-{cluster.tag}"))
        writer = AppStatusWriter(directory, cluster.kube_client,
                                 phase_counts=lambda k: {"Queued": 2, "Succeeded": 7}
                                 if k == key else {},
                                 interval=0.3, max_backoff=1.0).start()
        try:
            status = wait_for(lambda: _ready_with_workers(
                cluster.get_app(team, "default")), 30.0, "Ready with the worker")
            assert status["workers"] == [{"hostname": worker.name, "queues": ["bulk", "reports"]}]
            assert status["workerCount"] == 1
            assert status["queues"] == [{"name": "idle", "depth": 1},
                                        {"name": "reports", "depth": 0}]
            assert status["tasks"] == {"Queued": 2, "Succeeded": 7}
            assert status["observedGeneration"] == 1 and "lastError" not in status
            # The same, as the metrics the alerts and the Grafana dashboard read.
            label = app_label(team, "default")
            assert gauge(metrics.APP_UNREACHABLE, app=label) == 0
            assert gauge(metrics.BROKER_QUEUE_DEPTH, app=label, queue="idle") == 1

            redis_a.stop()  # the broker goes away: Ready=False, a Warning, the error kept
            down = wait_for(lambda: _ready_is(cluster.get_app(team, "default"),
                                                             "False"), 30.0, "Ready=False")
            ready = down["conditions"][0]
            assert ready["reason"] == "BrokerUnreachable"
            assert ready["message"].startswith("broker unreachable: ConnectionError")
            assert down["lastError"] == ready["message"]
            assert gauge(metrics.APP_UNREACHABLE, app=label) == 1
            wait_for(lambda: ("Warning", "AppNotReady", ready["message"])
                     in cluster.events(team, "default"), 30.0, "AppNotReady")

            redis_a.start()  # back (empty: the password must be set again)
            set_password(redis_a, PASSWORD)
            up = wait_for(lambda: _ready_is(cluster.get_app(team, "default"),
                                                                "True"), 60, "Ready=True again")
            # The last error stays on record (the restart's own, e.g. the moment before
            # the password was set again, may have replaced the first).
            assert up["lastError"].startswith("broker ")
            wait_for(lambda: [e[1] for e in cluster.events(
                team, "default")].count("AppReady") >= 2, 30.0, "AppReady again")
            assert gauge(metrics.APP_UNREACHABLE, app=label) == 0
        finally:
            writer.stop()
    finally:
        worker.stop()
        registry.close_all()
    app_text = json.dumps(cluster.get_app(team, "default")) + caplog.text
    app_text += json.dumps(cluster.events(team, "default"))
    assert PASSWORD not in app_text and ENCODED not in app_text


def _ready_with_workers(obj: dict[str, Any]) -> dict[str, Any] | None:
    status = _ready_is(obj, "True")
    return status if status and status.get("workers") else None


def _ready_is(obj: dict[str, Any], value: str) -> dict[str, Any] | None:
    status = obj.get("status") or {}
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Ready" and condition.get("status") == value:
            return dict(status)
    return None


def test_the_background_refresh_picks_up_a_rotated_password_by_itself(
    cluster: Cluster, redis_a: RedisServer,
) -> None:
    team = cluster.namespace("bg", team="a")
    set_password(redis_a, "first")
    cluster.secret(team, "broker", **urls(redis_a, "first"))
    cluster.app(team, "default", app_spec("broker"))
    registry = BackendRegistry(opened)
    directory = AppDirectory(cluster.kube_client, registry, operator_namespace=team,
                             secret_refresh=1.0)
    changes: list[str] = []
    directory.subscribe(changes.append)
    directory.load([team])
    first = directory.resolve(team, None)
    assert isinstance(first, ResolvedApp)
    directory.start()
    try:
        set_password(redis_a, PASSWORD, "first")
        cluster.secret(team, "broker", **urls(redis_a, ENCODED))
        changes.clear()
        second = wait_for(lambda: _other(directory.resolve(team, None), first), 30.0,
                          "the new Secret read")
        assert second.backend.broker_run_id() == run_id(redis_a, PASSWORD)
        assert changes == [f"CeleryApp/{team}/default"]
        assert isinstance(first.backend, Recorded) and first.backend.closed
    finally:
        directory.stop()
        registry.close_all()


def _other(answer: ResolvedApp | AppProblem, than: ResolvedApp) -> ResolvedApp | None:
    return answer if isinstance(answer, ResolvedApp) and answer.backend is not than.backend \
        else None
