"""`make demo`: the whole product on this machine, until Ctrl-C.

Brings up etcd + kube-apiserver (or uses $KUBECONFIG with USE_EXISTING_CLUSTER=true),
Redis, a demo Celery worker and the operator; applies examples/; tells you how to look.
BROKER=amqp (`make demo BROKER=amqp`) puts the broker on a RabbitMQ node instead, and
RESULTS=postgresql the results in a PostgreSQL database (Celery's db+ backend); both
default to Redis.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Protocol

from celery_operator.config import redact_url
from celery_operator.devstack.assets import REPO_ROOT
from celery_operator.devstack.controlplane import ControlPlane, ExistingCluster
from celery_operator.devstack.operatorproc import OperatorProcess
from celery_operator.devstack.postgresserver import PostgresServer
from celery_operator.devstack.rabbitmqserver import RabbitMQServer
from celery_operator.devstack.redisserver import RedisServer
from celery_operator.devstack.worker import CeleryWorker

EXAMPLES = REPO_ROOT / "examples"

TRY_IT = """
celery-operator demo is up.

  export KUBECONFIG={kubeconfig}
  kubectl get celery                      # every ScheduledTask and PeriodicTask
  kubectl get st -o wide                  # tasks: phase, due time, result
  kubectl get pt                          # schedules: last and next runs
  kubectl describe st add-now             # status and Events of one task
  kubectl explain scheduledtask.spec.task

Try your own:
  kubectl apply -f - <<'YAML'
  apiVersion: celeryoperator.dev/v1alpha1
  kind: ScheduledTask
  metadata: {{name: hello, namespace: default}}
  spec:
    task: {{name: demo.add, args: [40, 2]}}
    countdown: 5
  YAML

Broker / results: {broker} / {backend}
Logs: {logs}/  (operator.log and the worker's log)
Press Ctrl-C to stop and clean up.
"""


BROKERS = ("redis", "amqp")
RESULTS = ("redis", "postgresql")


class _Stoppable(Protocol):
    def stop(self) -> None: ...


def demo_broker() -> str:
    """The demo's broker from $BROKER (redis by default); anything else is refused."""
    return _choice("BROKER", BROKERS, "broker")


def demo_results() -> str:
    """The demo's result backend from $RESULTS (redis by default)."""
    return _choice("RESULTS", RESULTS, "result backend")


def _choice(variable: str, choices: tuple[str, ...], what: str) -> str:
    kind = os.environ.get(variable, "").strip().lower() or choices[0]
    if kind not in choices:
        raise SystemExit(
            f"{variable}={kind!r} is not a demo {what} (use one of {', '.join(choices)})"
        )
    return kind


def run_demo(workdir: str | None = None) -> int:
    kind, results = demo_broker(), demo_results()
    folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="celery-operator-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    logs = folder / "logs"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started: list[_Stoppable] = []
    try:
        existing = os.environ.get("USE_EXISTING_CLUSTER", "").lower() in ("1", "true", "yes")
        print("using $KUBECONFIG ..." if existing else "starting etcd + kube-apiserver ...",
              flush=True)
        kube = ExistingCluster().start() if existing else ControlPlane(folder / "cp").start()
        started.append(kube)
        redis = RedisServer(folder / "redis").start()
        started.append(redis)
        broker, backend = redis.db_url(0), redis.db_url(1)
        if kind == "amqp":
            print("starting a RabbitMQ node ...", flush=True)
            rabbitmq = RabbitMQServer(folder / "rabbitmq").start()
            started.append(rabbitmq)
            broker = rabbitmq.url
        if results == "postgresql":
            print("starting PostgreSQL ...", flush=True)
            postgres = PostgresServer(folder / "postgres").start()
            started.append(postgres)
            backend = "db+" + postgres.url.replace("postgresql://", "postgresql+psycopg://")
        worker = CeleryWorker(
            broker, backend, queues=("celery", "high_priority"), workdir=logs
        ).start()
        started.append(worker)
        operator = OperatorProcess(
            kube.kubeconfig, broker, backend, workdir=logs, name="operator"
        ).start()
        started.append(operator)
        if any(EXAMPLES.glob("*.yaml")):
            kube.kubectl("apply", "-f", str(EXAMPLES))
        print(
            TRY_IT.format(kubeconfig=kube.kubeconfig, broker=broker,
                          backend=redact_url(backend), logs=logs),
            flush=True,
        )
        while not stop.wait(1.0):
            for proc in (operator.process, worker.process):
                if not proc.running():
                    print(f"{proc.name} exited; see {proc.log_path}", flush=True)
                    return 1
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        print("\nstopping ...", flush=True)
        for thing in reversed(started):
            thing.stop()
