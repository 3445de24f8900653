"""Fixtures over the real stack: control plane, Redis and Celery workers.

Session-scoped: one etcd + kube-apiserver (or USE_EXISTING_CLUSTER=true with
$KUBECONFIG), one redis-server, one demo worker. Function-scoped: a fresh namespace
per test (the bare API server never deletes namespaces, so names are unique).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from celery_operator.devstack import (
    CeleryWorker,
    ControlPlane,
    ExistingCluster,
    KubeEnv,
    RedisServer,
)

# One Hypothesis profile for the whole suite: results must not depend on how busy the
# machine is (no deadlines, no wall-clock health checks) nor on luck (derandomized; a
# failure prints the blob that reproduces it).
settings.register_profile(
    "celery-operator",
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
    derandomize=True,
    print_blob=True,
)
settings.load_profile("celery-operator")

BROKER_DB = 0
BACKEND_DB = 1


def use_existing_cluster() -> bool:
    return os.environ.get("USE_EXISTING_CLUSTER", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEnv]:
    env: ControlPlane | ExistingCluster
    if use_existing_cluster():
        env = ExistingCluster().start()
    else:
        env = ControlPlane(tmp_path_factory.mktemp("controlplane")).start()
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture
def namespace(kube: KubeEnv) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube.kubectl("create", "namespace", name)
    return name


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def broker_url(redis_server: RedisServer) -> str:
    return redis_server.db_url(BROKER_DB)


@pytest.fixture(scope="session")
def backend_url(redis_server: RedisServer) -> str:
    return redis_server.db_url(BACKEND_DB)


@pytest.fixture(scope="session")
def celery_worker(
    broker_url: str, backend_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryWorker]:
    worker = CeleryWorker(
        broker_url,
        backend_url,
        queues=("celery", "high_priority"),
        workdir=tmp_path_factory.mktemp("worker"),
    ).start()
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
