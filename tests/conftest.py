"""Fixtures over the real stack: control plane, Redis and Celery workers.

Session-scoped: one etcd + kube-apiserver (or USE_EXISTING_CLUSTER=true with
$KUBECONFIG), one redis-server, one demo worker. Function-scoped: a fresh namespace
per test (the bare API server never deletes namespaces, so names are unique; our
objects in it are deleted after the test).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from celery_operator.api import (
    CELERYAPP_PLURAL,
    GROUP,
    PERIODIC_PLURAL,
    SCHEDULED_PLURAL,
    VERSION,
)
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


STARTED_CONTROL_PLANE = pytest.StashKey[ControlPlane]()


@pytest.fixture(scope="session")
def kube(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[KubeEnv]:
    env: ControlPlane | ExistingCluster
    if use_existing_cluster():
        env = ExistingCluster().start()
    else:
        env = ControlPlane(tmp_path_factory.mktemp("controlplane")).start()
        pytestconfig.stash[STARTED_CONTROL_PLANE] = env
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture(scope="session")
def custom_objects(kube: KubeEnv) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube.api_client())


OUR_PLURALS = (SCHEDULED_PLURAL, PERIODIC_PLURAL, CELERYAPP_PLURAL)


def delete_our_objects(custom: client.CustomObjectsApi, namespaces: Iterable[str]) -> None:
    """Delete every ScheduledTask, PeriodicTask and CeleryApp in `namespaces`.

    The bare API server never empties a deleted namespace: without this, every later
    operator that watches all namespaces would pick up (and write, and post Events for)
    every object earlier tests left behind."""
    for name in namespaces:
        for plural in OUR_PLURALS:
            with contextlib.suppress(ApiException, OSError, HTTPError):
                # (the deleted objects come back: left undecoded, see _namespaces_holding)
                custom.delete_collection_namespaced_custom_object(
                    GROUP, VERSION, name, plural, _preload_content=False, _request_timeout=30)


@pytest.fixture
def namespace(kube: KubeEnv, custom_objects: client.CustomObjectsApi) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube.kubectl("create", "namespace", name)
    yield name
    delete_our_objects(custom_objects, [name])


@pytest.fixture(scope="module", autouse=True)
def sweep_objects(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each module that used our own control plane: what its tests left in
    namespaces of their own making is deleted too (never on an existing cluster: not
    ours to sweep)."""
    yield
    env = request.config.stash.get(STARTED_CONTROL_PLANE, None)
    if env is None:
        return
    api = env.api_client()
    namespaces: set[str] = set()
    for plural in OUR_PLURALS:
        with contextlib.suppress(ApiException, OSError, HTTPError):
            namespaces.update(_namespaces_holding(api, plural))
    delete_our_objects(client.CustomObjectsApi(api), sorted(namespaces))


def _namespaces_holding(api: client.ApiClient, plural: str) -> set[str]:
    """The namespaces with objects of `plural`, from their metadata only: a whole object
    may be one the client cannot decode (test_hostile_manifests nests one deeper than
    Python's recursion limit)."""
    request = api.param_serialize(
        "GET", f"/apis/{GROUP}/{VERSION}/{plural}", auth_settings=["BearerToken"],
        header_params={"Accept": "application/json;as=PartialObjectMetadataList;"
                                 "g=meta.k8s.io;v=v1"})
    listed = json.loads(api.call_api(*request, _request_timeout=30).read())
    return {item["metadata"]["namespace"] for item in listed.get("items") or []}


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
