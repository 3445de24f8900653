"""A real local stack for tests, `make demo` and benchmarks.

Starts etcd + kube-apiserver (built from Go modules by hack/envtest), a real
redis-server (or a RabbitMQ node) and real `celery worker` processes, each in its own
process session, and stops them by pid. This is development tooling: the operator itself never
imports it, so it sits outside the layers that import-linter checks.
"""

from celery_operator.devstack.assets import find_binary
from celery_operator.devstack.controlplane import ControlPlane, ExistingCluster, KubeEnv
from celery_operator.devstack.processes import ManagedProcess, free_port
from celery_operator.devstack.rabbitmqserver import RabbitMQServer
from celery_operator.devstack.redisserver import RedisServer
from celery_operator.devstack.worker import CeleryWorker

__all__ = [
    "CeleryWorker",
    "ControlPlane",
    "ExistingCluster",
    "KubeEnv",
    "ManagedProcess",
    "RabbitMQServer",
    "RedisServer",
    "find_binary",
    "free_port",
]
