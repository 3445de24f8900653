"""CeleryApp and ClusterCeleryApp end to end: the operator as a process, real Redis servers
(one per app), real Celery workers, the real API server.

Each app has its own redis-server and worker; a BrokerTap on every broker counts what
reached it, so "only" and "nothing" are counted where the messages land, not taken from
the operator's own account. The flags' broker (--broker-url) is the session's Redis with
its demo worker.

test_a_stopped_broker_delays_only_its_own_apps_tasks also shows the operator sending a
task twice when it published it to a restarted (empty) broker before its broker check saw
the restart: it records the old run id, then takes its own message for lost.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from kubernetes import client
from kubernetes.client.rest import ApiException

from celery_operator.api import GROUP, SCHEDULED_PLURAL, VERSION
from celery_operator.api.names import CELERYAPP_PLURAL, CLUSTER_CELERYAPP_PLURAL
from celery_operator.api.timefmt import parse_time
from celery_operator.devstack import CeleryWorker, KubeEnv, RedisServer
from celery_operator.devstack.demo_app import read_executions

from .broker_tap import BrokerTap
from .conftest import StartOperator, Tasks, events_for
from .test_apps_admission import DENIED, apply, doc_blocks

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WORKER_APP = "tests.integration.apps_e2e_worker"
API_VERSION = f"{GROUP}/{VERSION}"
PASSWORD = "r0t@te:me/now%"  # every character a URL cares about
ENCODED = urllib.parse.quote(PASSWORD, safe="")
DOC_PASSWORD = "reports-s3cret"  # docs/install.md's PASSWORD placeholder, made real
COUNTDOWN = 6  # s: long enough to change the app before the task is due


# ---- the parts: a Redis server with a worker, per app -----------------------------------------


@dataclass
class Broker:
    """One app's redis-server (broker db 0, results db 1) and the worker that serves it."""

    redis: RedisServer
    worker: CeleryWorker
    log: Path  # the worker's execution log: every task body it entered
    password: str | None = None

    def url(self, db: int) -> str:
        return redis_url(self.redis.port, db, self.password)

    def runs(self, task_id: str) -> int:
        return read_executions(self.log).runs[task_id]

    def tap(self) -> BrokerTap:
        return BrokerTap("127.0.0.1", self.redis.port, db=0).start()

    def restart_worker(self, queues: tuple[str, ...] = ("celery",)) -> None:
        self.worker.stop()
        self.worker = start_worker(self.url(0), self.url(1), self.worker.workdir, self.log,
                                   queues)


def start_worker(broker: str, backend: str, workdir: Path, log: Path,
                 queues: tuple[str, ...] = ("celery",)) -> CeleryWorker:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return CeleryWorker(broker, backend, queues=queues, concurrency=1, workdir=workdir,
                        app=WORKER_APP, execution_log=log,
                        extra_env={"PYTHONPATH": path}).start()


def redis_url(port: int, db: int, password: str | None = None) -> str:
    auth = f":{urllib.parse.quote(password, safe='')}@" if password else ""
    return f"redis://{auth}127.0.0.1:{port}/{db}"


def make_broker(workdir: Path, queues: tuple[str, ...] = ("celery",),
                password: str | None = None) -> Broker:
    workdir.mkdir(parents=True, exist_ok=True)
    server = RedisServer(workdir / "redis").start()
    if password:
        admin = redis_lib.Redis(host="127.0.0.1", port=server.port)
        admin.config_set("requirepass", password)
        admin.close()
    log = workdir / "executions.log"
    worker = start_worker(redis_url(server.port, 0, password), redis_url(server.port, 1, password),
                          workdir / "worker", log, queues)
    return Broker(server, worker, log, password)


def run_id_of(broker: Broker) -> str:
    admin = redis_lib.Redis(host="127.0.0.1", port=broker.redis.port, password=broker.password)
    try:
        return str(admin.info("server")["run_id"])
    finally:
        admin.close()


def stop_broker(broker: Broker) -> None:
    broker.worker.stop()
    broker.redis.stop()


@pytest.fixture(scope="module")
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Broker]]:
    """Two apps' brokers with a worker each, shared by the tests that leave them as they
    found them (tests that stop or re-password a broker make their own)."""
    a = make_broker(tmp_path_factory.mktemp("app-a"))
    b = make_broker(tmp_path_factory.mktemp("app-b"))
    try:
        yield a, b
    finally:
        stop_broker(a)
        stop_broker(b)


@pytest.fixture
def taps(brokers: tuple[Broker, Broker]) -> Iterator[tuple[BrokerTap, BrokerTap]]:
    a, b = brokers[0].tap(), brokers[1].tap()
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


# ---- the API objects -----------------------------------------------------------------------------


class Apps:
    """CeleryApps and their Secrets in one namespace."""

    def __init__(self, kube: KubeEnv, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(kube.api_client())
        self.core = client.CoreV1Api(kube.api_client())
        self.namespace = namespace

    def secret(self, name: str, broker: str, backend: str,
               keys: tuple[str, str] = ("broker", "backend")) -> None:
        ns = self.namespace
        body = client.V1Secret(metadata=client.V1ObjectMeta(name=name, namespace=ns),
                               string_data=dict(zip(keys, (broker, backend), strict=True)))
        try:
            self.core.create_namespaced_secret(ns, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.replace_namespaced_secret(name, ns, body)

    def create(self, name: str, secret: str, **spec: Any) -> None:
        body = {
            "apiVersion": API_VERSION, "kind": "CeleryApp",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"broker": {"secretKeyRef": {"name": secret, "key": "broker"}},
                     "resultBackend": {"secretKeyRef": {"name": secret, "key": "backend"}},
                     **spec},
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace,
                                                    CELERYAPP_PLURAL, body)

    def get(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, CELERYAPP_PLURAL, name)
        return obj

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace,
                                                   CELERYAPP_PLURAL, name, {"spec": spec})

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace,
                                                    CELERYAPP_PLURAL, name)

    def wait_ready(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        """The operator has read the app and reached its broker and backend."""
        return wait_for(f"CeleryApp {name} Ready", lambda: ready_status(self.get(name)),
                        timeout, show=lambda: self.get(name).get("status"))


def ready_status(obj: dict[str, Any]) -> dict[str, Any] | None:
    status: dict[str, Any] = obj.get("status") or {}
    ready = condition(status, "Ready")
    return status if ready and ready["status"] == "True" else None


def condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in status.get("conditions") or ():
        if cond.get("type") == type_:
            return dict(cond)
    return None


def call(task: str = "demo.add", args: list[Any] | None = None, **more: Any) -> dict[str, Any]:
    return {"name": task, "args": args if args is not None else [2, 3], **more}


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0,
             show: Callable[[], Any] | None = None) -> Any:
    """Poll `check` until it returns something true; on timeout say `show()`."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            seen = f"; last seen: {show()}" if show is not None else ""
            raise AssertionError(f"{what}: not in {timeout} s{seen}")
        time.sleep(0.2)


def hold(what: str, until: float, check: Callable[[], Any]) -> None:
    """`check` stays true until the wall-clock time `until` (polled, so a break is caught
    when it happens)."""
    while True:
        assert check(), f"{what}: broken at {time.time():.1f} (held until {until:.1f})"
        if time.time() > until:
            return
        time.sleep(0.2)


def due_of(obj: dict[str, Any]) -> float:
    return parse_time(str(obj["status"]["dueTime"])).timestamp()


def stalled(tasks: Tasks, name: str, reason: str, timeout: float = 30.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        status: dict[str, Any] = tasks.get(name).get("status") or {}
        cond = condition(status, "Stalled")
        ok = cond and cond["status"] == "True" and cond["reason"] == reason
        return status if ok else None
    status: dict[str, Any] = wait_for(f"{name} Stalled {reason}", check, timeout)
    return status


def not_stalled(obj: dict[str, Any]) -> bool:
    cond = condition(obj.get("status") or {}, "Stalled")
    return cond is None or cond["status"] == "False"


def task_ids(objs: list[dict[str, Any]]) -> list[str]:
    return [str(o["status"]["taskId"]) for o in objs]


def published(tap: BrokerTap) -> Counter[str]:
    tap.sync()
    return tap.all_published()


def held_and_reported(
    tasks: Tasks, core: client.CoreV1Api, namespace: str, name: str, reason: str,
    message: str, taps: tuple[BrokerTap, ...],
) -> None:
    """Its app will not take the task: Scheduled, Stalled with `reason` and `message`, one
    Warning saying so, and nothing sent to any of `taps` until past its due time."""
    status = stalled(tasks, name, reason)
    assert status["phase"] == "Scheduled"
    assert condition(status, "Stalled")["message"] == message  # type: ignore[index]
    assert ("Warning", reason, message) in events_for(core, namespace, name)
    hold("held past the due time", due_of(tasks.get(name)) + 3, lambda: (
        tasks.get(name)["status"]["phase"] == "Scheduled"
        and not any(published(tap) for tap in taps)))


# ---- 1. two apps, two brokers -------------------------------------------------------------------


def test_each_apps_tasks_reach_only_its_own_broker_and_workers(
    kube: KubeEnv, namespace: str, start_operator: StartOperator, tasks: Tasks,
    brokers: tuple[Broker, Broker], taps: tuple[BrokerTap, BrokerTap], broker_tap: BrokerTap,
) -> None:
    a, b = brokers
    apps = Apps(kube, namespace)
    for name, broker in (("alpha", a), ("beta", b)):
        apps.secret(f"{name}-urls", broker.url(0), broker.url(1))
        apps.create(name, f"{name}-urls")
    start_operator()
    apps.wait_ready("alpha")
    apps.wait_ready("beta")

    names = {"alpha": [f"alpha-{i}" for i in range(3)], "beta": [f"beta-{i}" for i in range(3)]}
    for app, members in names.items():
        for i, name in enumerate(members):
            tasks.create(name, {"app": {"name": app}, "task": call(args=[i, 10])})
    for app, broker, tap in (("alpha", a, taps[0]), ("beta", b, taps[1])):
        done = [tasks.wait_phase(n, "Succeeded", timeout=60) for n in names[app]]
        assert [d["status"]["worker"] for d in done] == [broker.worker.name] * 3
        assert [d["status"]["result"] for d in done] == [10, 11, 12]
        # This broker received exactly its own app's messages, each once.
        assert published(tap) == Counter({i: 1 for i in task_ids(done)})
        assert [broker.runs(i) for i in task_ids(done)] == [1, 1, 1]
    assert published(broker_tap) == Counter()  # nothing went to the flags' broker


# ---- 2. no spec.app: the namespace's `default`, else the flags ----------------------------------


def test_a_task_without_app_uses_the_namespaces_default_app_else_the_flags(
    kube: KubeEnv, namespace: str, start_operator: StartOperator, tasks: Tasks,
    custom: client.CustomObjectsApi, brokers: tuple[Broker, Broker],
    taps: tuple[BrokerTap, BrokerTap], broker_tap: BrokerTap, celery_worker: CeleryWorker,
) -> None:
    a, _ = brokers
    plain = f"{namespace}-plain"
    kube.kubectl("create", "namespace", plain)
    apps = Apps(kube, namespace)
    apps.secret("urls", a.url(0), a.url(1))
    apps.create("default", "urls")
    start_operator("--namespace", plain)
    apps.wait_ready("default")

    tasks.create("uses-default", {"task": call()})
    elsewhere = Tasks(custom, plain, SCHEDULED_PLURAL)
    elsewhere.create("uses-flags", {"task": call()})
    done = tasks.wait_phase("uses-default", "Succeeded", timeout=60)
    flagged = elsewhere.wait_phase("uses-flags", "Succeeded", timeout=60)

    assert done["status"]["worker"] == a.worker.name
    assert flagged["status"]["worker"] == celery_worker.name
    [app_id], [flags_id] = task_ids([done]), task_ids([flagged])
    assert published(taps[0]) == Counter({app_id: 1})
    assert published(broker_tap) == Counter({flags_id: 1})


# ---- 3. a policy tightened after the task was accepted ------------------------------------------


def test_a_policy_tightened_after_creation_holds_the_task_until_relaxed(
    kube: KubeEnv, namespace: str, start_operator: StartOperator, tasks: Tasks,
    core: client.CoreV1Api, brokers: tuple[Broker, Broker],
    taps: tuple[BrokerTap, BrokerTap], broker_tap: BrokerTap,
) -> None:
    a, _ = brokers
    apps = Apps(kube, namespace)
    apps.secret("urls", a.url(0), a.url(1))
    apps.create("gamma", "urls", policy={"allowedTasks": ["demo.*"]})
    start_operator()
    apps.wait_ready("gamma")

    tasks.create("later", {"app": {"name": "gamma"}, "task": call(), "countdown": COUNTDOWN})
    assert not_stalled(tasks.wait_phase("later", "Scheduled"))

    apps.patch_spec("gamma", {"policy": {"allowedTasks": ["reports.*"]}})
    rule = (f'spec.task.name: "demo.add" is not allowed by CeleryApp {namespace}/gamma '
            "(allowedTasks: reports.*)")
    # Past its due time (and the claim before it): never sent, still held.
    held_and_reported(tasks, core, namespace, "later", "NotAllowed", rule,
                      (taps[0], broker_tap))

    apps.patch_spec("gamma", {"policy": {"allowedTasks": ["demo.add"]}})
    done = tasks.wait_phase("later", "Succeeded", timeout=60)
    assert done["status"]["worker"] == a.worker.name
    assert not_stalled(done)
    [task_id] = task_ids([done])
    assert published(taps[0]) == Counter({task_id: 1})
    assert a.runs(task_id) == 1
    assert published(broker_tap) == Counter()


# ---- 4. the app deleted under a Scheduled task, then recreated ----------------------------------


def test_a_deleted_app_stalls_its_tasks_and_recreating_it_resumes_them(
    kube: KubeEnv, namespace: str, start_operator: StartOperator, tasks: Tasks,
    core: client.CoreV1Api, brokers: tuple[Broker, Broker],
    taps: tuple[BrokerTap, BrokerTap], broker_tap: BrokerTap,
) -> None:
    a, _ = brokers
    apps = Apps(kube, namespace)
    apps.secret("urls", a.url(0), a.url(1))
    apps.create("delta", "urls")
    start_operator()
    apps.wait_ready("delta")
    tasks.create("orphan", {"app": {"name": "delta"}, "task": call(), "countdown": COUNTDOWN})
    tasks.wait_phase("orphan", "Scheduled")

    apps.delete("delta")
    message = f'spec.app: CeleryApp "delta" not found in namespace "{namespace}"'
    held_and_reported(tasks, core, namespace, "orphan", "AppNotFound", message,
                      (taps[0], broker_tap))

    apps.create("delta", "urls")
    done = tasks.wait_phase("orphan", "Succeeded", timeout=60)
    assert done["status"]["worker"] == a.worker.name
    [task_id] = task_ids([done])
    assert published(taps[0]) == Counter({task_id: 1})
    assert published(broker_tap) == Counter()


# ---- 5. one app's broker down: only its tasks wait ----------------------------------------------


def test_a_stopped_broker_delays_only_its_own_apps_tasks(
    kube: KubeEnv, namespace: str, start_operator: StartOperator, tasks: Tasks,
    core: client.CoreV1Api, brokers: tuple[Broker, Broker],
    taps: tuple[BrokerTap, BrokerTap], broker_tap: BrokerTap, tmp_path: Path,
) -> None:
    up = brokers[0]
    down = make_broker(tmp_path / "down")
    down_tap = down.tap()
    try:
        apps = Apps(kube, namespace)
        apps.secret("up-urls", up.url(0), up.url(1))
        apps.secret("down-urls", down.url(0), down.url(1))
        apps.create("up", "up-urls")
        apps.create("down", "down-urls")
        operator = start_operator()
        apps.wait_ready("up")
        apps.wait_ready("down")

        # A message already on the down broker, on a queue no worker consumes: the broker
        # comes back empty, so the operator must send it again, to that broker only.
        tasks.create("parked", {"app": {"name": "down"}, "task": call(queue="parked")})
        [parked_id] = task_ids([tasks.wait_phase("parked", "Queued", timeout=30)])
        assert published(down_tap) == Counter({parked_id: 1})

        # Its worker comes back only after the operator has seen the broker restarted.
        down.worker.stop()
        down.redis.stop()
        for app in ("up", "down"):
            for i in range(2):
                tasks.create(f"{app}-{i}", {"app": {"name": app}, "task": call(),
                                            "countdown": 4})
        ups = [tasks.wait_phase(f"up-{i}", "Succeeded", timeout=40) for i in range(2)]
        # On time: started within a few seconds of the due time on a busy machine,
        # while the other app's broker is still down.
        starts = read_executions(up.log).first_start
        for obj, task_id in zip(ups, task_ids(ups), strict=True):
            assert starts[task_id] - due_of(obj) < 5.0, obj["status"]
        assert published(taps[0]) == Counter({i: 1 for i in task_ids(ups)})
        waiting = [tasks.get(f"down-{i}") for i in range(2)]
        assert [w["status"]["phase"] for w in waiting] == ["Dispatching"] * 2, waiting
        assert published(broker_tap) == Counter()

        # Restart it just after a failed broker check that waits 8 s or more for the next:
        # a task due now is then sent before the operator has seen the restarted broker.
        next_check = re.compile(
            rf"cannot reach the broker of app {namespace}/down \(next try in (\d+) s\)")
        seen = len(next_check.findall(operator.log_tail(100_000)))
        wait_for("a broker check backing off 8 s or more", lambda: [
            int(d) for d in next_check.findall(operator.log_tail(100_000))[seen:]
            if int(d) >= 8], timeout=40)
        down.redis.start()  # back, empty
        tasks.create("down-2", {"app": {"name": "down"}, "task": call()})
        # The operator has seen the restart when it sends the parked message again.
        new_run_id = run_id_of(down)
        wait_for("the parked task sent again to the restarted broker", lambda: (
            tasks.get("parked")["status"].get("brokerRunId") == new_run_id
            and down_tap.sessions_of(parked_id) == [1, 2]), timeout=90,
            show=lambda: (tasks.get("parked")["status"], down_tap.sessions_of(parked_id)))
        down.restart_worker()
        downs = [tasks.wait_phase(f"down-{i}", "Succeeded", timeout=90) for i in range(3)]
        ids = task_ids(downs)
        assert [d["status"]["worker"] for d in downs] == [down.worker.name] * 3
        # Sent once each, to the restarted broker: a publish made before the operator's
        # broker check noticed the restart is not a message the restart lost.
        down_tap.sync()
        assert {i: down_tap.sessions_of(i) for i in ids} == {i: [2] for i in ids}
        for i in range(3):
            reasons = [e[1] for e in events_for(core, namespace, f"down-{i}")]
            assert "Republished" not in reasons, reasons
        assert [down.runs(i) for i in ids] == [1, 1, 1]
        assert tasks.get("parked")["status"]["phase"] == "Queued"
        wait_for("the parked task's Republished Warning", lambda: [
            e for e in events_for(core, namespace, "parked") if e[:2] == ("Warning", "Republished")
        ], timeout=10)
        assert published(down_tap) == Counter({**{i: 1 for i in ids}, parked_id: 2})
        assert published(taps[0]) == Counter({i: 1 for i in task_ids(ups)})
        assert published(broker_tap) == Counter()
    finally:
        down_tap.stop()
        stop_broker(down)


# ---- 6. the Secret rotated, the operator not restarted ------------------------------------------


def test_a_rotated_secret_is_used_without_a_restart_and_no_password_leaks(
    kube: KubeEnv, namespace: str, start_operator: StartOperator, tasks: Tasks,
    core: client.CoreV1Api, tmp_path: Path,
) -> None:
    broker = make_broker(tmp_path / "rotated")
    try:
        apps = Apps(kube, namespace)
        apps.secret("urls", broker.url(0), broker.url(1))
        apps.create("default", "urls")
        operator = start_operator()
        apps.wait_ready("default")
        tasks.create("before", {"task": call()})
        tasks.wait_phase("before", "Succeeded", timeout=60)

        admin = redis_lib.Redis(host="127.0.0.1", port=broker.redis.port)
        admin.config_set("requirepass", PASSWORD)
        # Connections opened before keep their login: drop them, as a restart would.
        admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        admin.close()
        broker.password = PASSWORD
        assert ENCODED in broker.url(0) and PASSWORD not in broker.url(0)
        apps.secret("urls", broker.url(0), broker.url(1))
        broker.restart_worker()

        tasks.create("after", {"task": call(args=[20, 22])})
        seen: list[Any] = []  # every status of the task and the app until it ran

        def succeeded() -> dict[str, Any] | None:
            obj = tasks.get("after")
            seen.extend([obj.get("status"), apps.get("default").get("status")])
            return obj if (obj.get("status") or {}).get("phase") == "Succeeded" else None
        done = wait_for("after Succeeded", succeeded, timeout=90, show=lambda: seen[-2:])
        assert done["status"]["result"] == 42
        assert done["status"]["worker"] == broker.worker.name
        assert broker.runs(str(done["status"]["taskId"])) == 1
        status = apps.wait_ready("default", timeout=40)

        events = core.list_namespaced_event(namespace).items
        text = json.dumps([tasks.get("before"), done, apps.get("default"), status, seen])
        text += json.dumps([(e.reason, e.message) for e in events])
        text += operator.log_tail(100_000)
        for secret in (PASSWORD, ENCODED, urllib.parse.quote(PASSWORD)):
            assert secret not in text
    finally:
        stop_broker(broker)


# ---- 7. the app's status, and kubectl get celeryapps --------------------------------------------


def test_app_status_shows_workers_queue_depth_and_tasks_by_phase(
    kube: KubeEnv, namespace: str, start_operator: StartOperator, tasks: Tasks,
    brokers: tuple[Broker, Broker],
) -> None:
    a, _ = brokers
    parked = f"parked-{uuid.uuid4().hex[:6]}"  # a queue no worker consumes
    apps = Apps(kube, namespace)
    apps.secret("urls", a.url(0), a.url(1))
    apps.create("stats", "urls", policy={"allowedQueues": ["celery", parked]})
    start_operator()
    apps.wait_ready("stats")
    tasks.create("runs", {"app": {"name": "stats"}, "task": call()})
    tasks.create("waits", {"app": {"name": "stats"}, "task": call(queue=parked)})
    tasks.wait_phase("runs", "Succeeded", timeout=60)
    tasks.wait_phase("waits", "Queued", timeout=60)

    expected_tasks = {"Queued": 1, "Succeeded": 1}
    status = wait_for("status with both tasks", lambda: (
        s if (s := ready_status(apps.get("stats"))) and s.get("tasks") == expected_tasks
        and s.get("queues") == [{"name": "celery", "depth": 0}, {"name": parked, "depth": 1}]
        else None), timeout=45)
    assert status["workers"] == [{"hostname": a.worker.name, "queues": ["celery"]}]
    assert status["workerCount"] == 1
    assert "lastError" not in status

    out = kube.kubectl("get", "celeryapps", "-n", namespace).stdout.splitlines()
    assert out[0].split()[:3] == ["NAME", "READY", "WORKERS"]
    assert [line.split()[:3] for line in out[1:]] == [["stats", "True", "1"]]


# ---- 8. metrics carry the app -----------------------------------------------------------------


def test_dispatch_metrics_carry_the_app_label(
    kube: KubeEnv, namespace: str, start_operator: StartOperator, tasks: Tasks,
    brokers: tuple[Broker, Broker], celery_worker: CeleryWorker,
) -> None:
    a, _ = brokers
    apps = Apps(kube, namespace)
    apps.secret("urls", a.url(0), a.url(1))
    apps.create("metered", "urls")
    operator = start_operator()
    apps.wait_ready("metered")
    tasks.create("by-app", {"app": {"name": "metered"}, "task": call()})
    tasks.create("by-flags", {"task": call()})
    tasks.wait_phase("by-app", "Succeeded", timeout=60)
    tasks.wait_phase("by-flags", "Succeeded", timeout=60)

    counts: dict[str, float] = {}
    for line in operator.metrics().splitlines():
        found = re.match(r"celery_operator_dispatched_total\{(.*)\} (\S+)$", line)
        if found:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1)))
            counts[labels["app"]] = counts.get(labels["app"], 0.0) + float(found.group(2))
    assert counts == {f"{namespace}/metered": 1.0, "default": 1.0}


# ---- 9. docs/install.md "Several teams, several apps", as written --------------------------------


@pytest.fixture
def team_reports(kube: KubeEnv) -> Iterator[None]:
    """The doc's fixed names: start and end without its tasks, apps and shared app."""
    def clean() -> None:
        kube.kubectl("delete", "scheduledtasks,periodictasks,celeryapps", "--all", "-n",
                     "team-reports", "--ignore-not-found", check=False)
        kube.kubectl("delete", "clusterceleryapp", "shared", "--ignore-not-found", check=False)
    clean()
    yield
    clean()


def test_install_doc_apps_section_runs_through_the_operator(
    kube: KubeEnv, namespace: str, start_operator: StartOperator, team_reports: None,
    tmp_path: Path,
) -> None:
    yamls, consoles = doc_blocks()
    namespace_and_secret, celery_app, good_task, bad_task, shared = yamls
    team = celery_app[0]["metadata"]["namespace"]
    broker = make_broker(tmp_path / "team", queues=("reports",), password=DOC_PASSWORD)
    try:
        # Only the URLs' placeholders change: PASSWORD and the Service's host:port.
        secret = next(d for d in namespace_and_secret if d["kind"] == "Secret")
        for key, url in secret["stringData"].items():
            assert url.startswith("redis://:PASSWORD@redis.team-reports.svc:6379/"), url
            secret["stringData"][key] = url.replace("PASSWORD", DOC_PASSWORD).replace(
                "redis.team-reports.svc:6379", f"127.0.0.1:{broker.redis.port}")
        assert apply(kube, namespace_and_secret).returncode == 0
        # The shared app's Secret lives in the operator's namespace (not in the doc; its
        # keys are the ones the doc's ClusterCeleryApp names).
        Apps(kube, namespace).secret("shared-celery", broker.url(2), broker.url(3),
                                     keys=("broker-url", "result-backend"))
        start_operator("--namespace", team, extra_env={"POD_NAMESPACE": namespace})
        refused_at_apply = False
        for docs in (celery_app, good_task, bad_task, shared):
            proc = apply(kube, docs)
            if docs is bad_task and proc.returncode != 0:
                # The chart's admission policies are installed: refused as the doc shows.
                assert consoles[0].strip() in proc.stderr
                refused_at_apply = True
                continue
            assert proc.returncode == 0, proc.stderr

        custom = client.CustomObjectsApi(kube.api_client())
        team_tasks = Tasks(custom, team, SCHEDULED_PLURAL)
        name = good_task[0]["metadata"]["name"]
        done = team_tasks.wait_phase(name, "Succeeded", timeout=60)
        assert done["status"]["result"] == "report 2030-01"
        # Its worker consumes only `reports`: the app's default queue was used.
        assert done["status"]["worker"] == broker.worker.name
        assert broker.runs(str(done["status"]["taskId"])) == 1

        # Without the admission policies, the operator holds the doc's bad task itself,
        # with the very message the doc shows kubectl printing.
        shown = DENIED.search(consoles[0])
        assert shown
        if not refused_at_apply:
            status = stalled(team_tasks, bad_task[0]["metadata"]["name"], "NotAllowed")
            held = condition(status, "Stalled") or {}
            assert held["message"] == shown.group(1).strip()

        # The shared ClusterCeleryApp is usable (its Secret found in the operator's
        # namespace, its broker reached).
        def shared_app() -> dict[str, Any]:
            obj: dict[str, Any] = custom.get_cluster_custom_object(
                GROUP, VERSION, CLUSTER_CELERYAPP_PLURAL, "shared")
            return obj
        wait_for("ClusterCeleryApp shared Ready", lambda: ready_status(shared_app()),
                 show=lambda: shared_app().get("status"))
    finally:
        stop_broker(broker)
