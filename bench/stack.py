"""The benchmark's stack: one control plane and Redis for the whole run, and scopes that
start workers, operators and beat for one scenario and always stop them again."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import redis as redis_lib
import urllib3
from kubernetes import client

from celery_operator.api import GROUP, PERIODIC_PLURAL, SCHEDULED_PLURAL, VERSION
from celery_operator.devstack import (
    CeleryWorker,
    ControlPlane,
    ManagedProcess,
    RabbitMQServer,
    RedisServer,
)
from celery_operator.devstack.operatorproc import OperatorProcess
from celery_operator.devstack.processes import wait_until

from . import measure

REPO_ROOT = Path(__file__).resolve().parents[1]
BROKER_DB = 0
BACKEND_DB = 1
CREATE_THREADS = 16


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Stack:
    """etcd + kube-apiserver, a broker/backend Redis, and a recorder Redis that is never
    restarted (the churn scenario restarts the broker and still needs every start count)."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="celery-operator-bench-"))
        self.kube = ControlPlane(self.workdir / "cp")
        self.redis = RedisServer(self.workdir / "redis")
        self.recorder = RedisServer(self.workdir / "recorder")
        self.rabbitmq: RabbitMQServer | None = None  # started for the first RabbitMQ scenario
        self.broker = "redis"
        self._api: client.ApiClient | None = None

    def start(self) -> Stack:
        log(f"starting etcd + kube-apiserver and Redis in {self.workdir}")
        self.kube.start()
        self.redis.start()
        self.recorder.start()
        return self

    def stop(self) -> None:
        for part in (self.rabbitmq, self.recorder, self.redis, self.kube):
            if part is None:
                continue
            with contextlib.suppress(Exception):
                part.stop()

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- URLs and clients -------------------------------------------------------------

    @property
    def broker_url(self) -> str:
        if self.broker == "amqp" and self.rabbitmq is not None:
            return self.rabbitmq.url
        return self.redis.db_url(BROKER_DB)

    @contextlib.contextmanager
    def on_broker(self, kind: str) -> Iterator[None]:
        """Workers, operators and native sends of the scenarios run meanwhile use this
        broker ("redis" or "amqp": a RabbitMQ node of this run); results stay in Redis."""
        if kind == "amqp" and self.rabbitmq is None:
            log("starting a RabbitMQ node")
            self.rabbitmq = RabbitMQServer(self.workdir / "rabbitmq").start()
        before, self.broker = self.broker, kind
        try:
            yield
        finally:
            self.broker = before

    @property
    def backend_url(self) -> str:
        return self.redis.db_url(BACKEND_DB)

    def results(self) -> redis_lib.Redis:
        return redis_lib.Redis.from_url(self.backend_url, socket_timeout=10)

    def recorder_client(self) -> redis_lib.Redis:
        return redis_lib.Redis.from_url(self.recorder.db_url(0), socket_timeout=10)

    @property
    def api(self) -> client.ApiClient:
        if self._api is None:
            api = self.kube.api_client()
            api.configuration.connection_pool_maxsize = CREATE_THREADS
            # A fresh client so the pool size applies.
            self._api = client.ApiClient(api.configuration)
        return self._api

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def pids(self) -> dict[str, int | None]:
        parts = {"kube-apiserver": self.kube.apiserver, "etcd": self.kube.etcd,
                 "redis": self.redis.process}
        if self.broker == "amqp" and self.rabbitmq is not None:
            parts["rabbitmq"] = self.rabbitmq.process
        return {name: proc.pid if proc is not None and proc.running() else None
                for name, proc in parts.items()}

    def flush_redis(self) -> None:
        for url in (self.redis.db_url(BROKER_DB), self.backend_url, self.recorder.db_url(0),
                    self.recorder.db_url(1)):
            with contextlib.closing(redis_lib.Redis.from_url(url)) as r:
                r.flushdb()

    # ---- objects ----------------------------------------------------------------------

    def namespace(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.kube.kubectl("create", "namespace", name)
        return name

    def create_many(
        self, namespace: str, plural: str, bodies: Sequence[Mapping[str, Any]],
        threads: int = CREATE_THREADS,
    ) -> tuple[float, float, list[str]]:
        """Create all bodies from a thread pool: (start, end, uids in body order)."""
        custom = self.custom

        def create(body: Mapping[str, Any]) -> str:
            for attempt in range(5):
                try:
                    resp = custom.create_namespaced_custom_object(
                        GROUP, VERSION, namespace, plural, dict(body), _preload_content=False
                    )
                    return str(measure.json_loads(cast(Any, resp).data)["metadata"]["uid"])
                except client.ApiException as exc:
                    if exc.status not in (429, 500, 503, 504) or attempt == 4:
                        raise
                    time.sleep(0.2 * (attempt + 1))
            raise AssertionError("unreachable")

        start = time.time()
        with ThreadPoolExecutor(threads, thread_name_prefix="create") as pool:
            uids = list(pool.map(create, bodies))
        return start, time.time(), uids

    def patch_status_many(
        self, namespace: str, plural: str, patches: Iterable[tuple[str, Mapping[str, Any]]],
        threads: int = CREATE_THREADS,
    ) -> None:
        custom = self.custom

        def patch(item: tuple[str, Mapping[str, Any]]) -> None:
            name, status = item
            custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, {"status": dict(status)},
                _preload_content=False,
            )

        with ThreadPoolExecutor(threads, thread_name_prefix="patch") as pool:
            list(pool.map(patch, patches))

    def list_objects(self, namespace: str, plural: str = SCHEDULED_PLURAL) -> list[dict[str, Any]]:
        resp = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, _preload_content=False, _request_timeout=120
        )
        items: list[dict[str, Any]] = measure.json_loads(cast(Any, resp).data)["items"]
        return items

    def delete_all(self, namespace: str) -> None:
        """Remove every object of ours in the namespace (no finalizers: immediate)."""
        for plural in (PERIODIC_PLURAL, SCHEDULED_PLURAL):
            try:
                self.custom.delete_collection_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, _request_timeout=300
                )
            except (client.ApiException, urllib3.exceptions.HTTPError) as exc:
                # The API server cuts a request at its 60 s timeout: a delete of 30,000
                # objects can outlast it (seen once, IncompleteRead). What is left only
                # adds to the watch; the scenario's figures are already taken.
                log(f"deleting the {plural} of {namespace} did not finish: {exc!r}"[:300])

    def apiserver_metrics(self) -> str:
        """The kube-apiserver's own /metrics, through the real kubectl."""
        return self.kube.kubectl("get", "--raw", "/metrics", timeout=60).stdout

    def apiserver_metrics_fast(self) -> str:
        """The same, through the Python client (cheap enough to poll)."""
        params = self.api.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
        resp = self.api.call_api(*params, _request_timeout=30)
        return bytes(cast(Any, resp).read()).decode()


class Scope:
    """Processes of one scenario (or one repeat): stopped in reverse order on exit."""

    def __init__(self, stack: Stack, name: str) -> None:
        self.stack = stack
        self.name = name
        self.dir = _fresh_dir(stack.workdir, name)
        self._stoppers: list[Callable[[], object]] = []
        self.procs: dict[str, ManagedProcess] = {}  # role -> the latest process in it

    def __enter__(self) -> Scope:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        while self._stoppers:
            with contextlib.suppress(Exception):
                self._stoppers.pop()()

    def defer(self, stop: Callable[[], object]) -> None:
        self._stoppers.append(stop)

    def worker(
        self, queue: str, *, concurrency: int, pool: str = "prefork", guard: str = "",
        recorder: bool = False,
    ) -> CeleryWorker:
        """guard: "" none, "backend" the demo app's DEMO_RUN_ONCE=1 (claims in the result
        backend), "separate" claims in the recorder Redis (never restarted)."""
        env = {"PYTHONPATH": _pythonpath()}
        if guard == "backend":
            env["DEMO_RUN_ONCE"] = "1"
        app = "celery_operator.devstack.demo_app"
        if recorder or guard == "separate":
            app = "bench.worker_app"
            env["BENCH_RECORDER_URL"] = self.stack.recorder.db_url(0)
        if guard == "separate":
            env["BENCH_GUARD_URL"] = self.stack.recorder.db_url(1)
        worker = CeleryWorker(
            self.stack.broker_url, self.stack.backend_url, queues=(queue,),
            concurrency=concurrency, pool=pool, events=True, extra_env=env,
            workdir=self.dir, app=app,
        )
        self.defer(worker.stop)
        self.procs["worker"] = worker.process
        return worker.start(timeout=90)

    def operator(self, namespaces: Sequence[str], *extra: str, name: str = "operator",
                 env: Mapping[str, str] | None = None) -> OperatorProcess:
        args = [a for ns in namespaces for a in ("--namespace", ns)]
        proc = OperatorProcess(
            self.stack.kube.kubeconfig, self.stack.broker_url, self.stack.backend_url,
            workdir=self.dir, extra_args=[*args, *extra], name=name, extra_env=env,
        )
        self.defer(proc.stop)
        self.procs["operator"] = proc.process
        return proc.start(timeout=90)

    def process(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> ManagedProcess:
        proc = ManagedProcess(
            name, argv, env={**os.environ, "PYTHONPATH": _pythonpath(), **env},
            log_path=self.dir / f"{name}.log", cwd=REPO_ROOT,
        )
        self.defer(lambda: proc.stop(grace=10))
        self.procs[name] = proc
        return proc.start()

    def cpu_window(self) -> measure.CpuWindow:
        """CPU per component (the stack's servers and this scope's processes) from now."""
        pids = dict(self.stack.pids())
        pids.update({role: p.pid for role, p in self.procs.items() if p.running()})
        return measure.CpuWindow(pids).start()

    def profiler(self, pid: int, label: str) -> Profiler | None:
        """py-spy record of `pid` (when BENCH_PROFILE=1 and py-spy is installed) from now
        until `stop()` or the process exits; GIL-holding samples only (--gil)."""
        if os.environ.get("BENCH_PROFILE") != "1":
            return None
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            log("BENCH_PROFILE=1 but py-spy is not installed (.venv/bin/pip install py-spy)")
            return None
        out = self.dir / f"profile-{label}.txt"
        proc = ManagedProcess(
            f"py-spy-{label}",
            [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "50", "--gil",
             "--nonblocking", "--output", str(out)],
            log_path=self.dir / f"py-spy-{label}.log",
        ).start()
        profiler = Profiler(proc, out)
        self.defer(profiler.stop)
        return profiler


class Profiler:
    def __init__(self, proc: ManagedProcess, path: Path) -> None:
        self.proc = proc
        self.path = path

    def stop(self) -> Path:
        """SIGINT makes py-spy write its output (SIGTERM would lose it)."""
        import signal

        self.proc.signal(signal.SIGINT)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not self.proc.running(), 30, interval=0.2, what="py-spy")
        self.proc.stop(grace=5)
        return self.path


def profile_summary(profiler: Profiler | None, top: int = 30) -> dict[str, Any] | None:
    """The top functions of a py-spy profile (stopped here if still running)."""
    if profiler is None:
        return None
    from . import profile

    path = profiler.stop()
    measure.wait_for(lambda: path.exists() and path.stat().st_size > 0, 15, 0.5)
    if not path.exists():
        return None
    summary = profile.top(path, top)
    summary["file"] = str(path)
    return summary


def _pythonpath() -> str:
    current = os.environ.get("PYTHONPATH")
    return f"{REPO_ROOT}{os.pathsep}{current}" if current else str(REPO_ROOT)


def _fresh_dir(parent: Path, name: str) -> Path:
    """A scope's own directory: a second scope of the same name (a variant, a repeat)
    never finds the first's files — beat's schedule file and sent log were read back as
    the second run's (interval-10k-never-wait's beat counted 10,000 runs not started)."""
    path, k = parent / name, 1
    while path.exists():
        k += 1
        path = parent / f"{name}-{k}"
    path.mkdir(parents=True)
    return path


@contextlib.contextmanager
def scope(stack: Stack, name: str) -> Iterator[Scope]:
    sc = Scope(stack, name)
    try:
        yield sc
    finally:
        sc.close()
