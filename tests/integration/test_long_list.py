"""The operator's first LIST outlives etcd's compaction without stopping the operator.

A chunked LIST is one snapshot whose continue token the API server refuses (410 Gone)
once etcd compacted its revision. kopf handed each chunk to the handlers before asking
for the next, so a list whose handling took longer than the compaction interval (5
minutes by default; 100,000 objects took more) failed, and kopf stopped the operator at
every start (it did on this control plane before the fix). Here etcd is compacted
every second and the list has three chunks: every object must be taken in by one
operator process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from celery_operator.api import API_VERSION, SCHEDULED_PLURAL
from celery_operator.controllers.handlers import LIST_CHUNK
from celery_operator.devstack import ControlPlane
from celery_operator.devstack.operatorproc import OperatorProcess

from .conftest import Tasks, wait_for

pytestmark = pytest.mark.integration

OBJECTS = 2 * LIST_CHUNK + 200  # three chunks
NAMESPACE = "long-list"


@pytest.fixture
def compacting_cluster(tmp_path: Path) -> Iterator[ControlPlane]:
    # Its own API server whatever cluster the suite uses (USE_EXISTING_CLUSTER too: the
    # envtest binaries are built by make test). Lists served by etcd, not the watch
    # cache, whose old revisions go within seconds.
    cluster = ControlPlane(tmp_path / "cp", apiserver_flags=[
        "--etcd-compaction-interval=1s", "--watch-cache=false"])
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def _manifests() -> str:
    """OBJECTS ScheduledTasks due in an hour, as one kubectl input (a JSON List)."""
    items = [{
        "apiVersion": API_VERSION, "kind": "ScheduledTask",
        "metadata": {"name": f"t{i:04d}", "namespace": NAMESPACE},
        "spec": {"task": {"name": "demo.add", "args": [i, 1]}, "countdown": 3600},
    } for i in range(OBJECTS)]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def test_a_list_longer_than_the_compaction_interval_is_taken_in_whole(
    compacting_cluster: ControlPlane, broker_url: str, backend_url: str, tmp_path: Path,
) -> None:
    cluster = compacting_cluster
    cluster.kubectl("create", "namespace", NAMESPACE)
    manifests = tmp_path / "tasks.json"
    manifests.write_text(_manifests())
    cluster.kubectl("create", "-f", str(manifests))
    tasks = Tasks(client.CustomObjectsApi(cluster.api_client()), NAMESPACE, SCHEDULED_PLURAL)
    operator = OperatorProcess(cluster.kubeconfig, broker_url, backend_url, workdir=tmp_path,
                               extra_args=["--namespace", NAMESPACE]).start()
    try:
        def scheduled() -> int:
            if not operator.process.running():
                raise AssertionError(f"the operator exited:\n{operator.log_tail(40)}")
            return sum((t.get("status") or {}).get("phase") == "Scheduled"
                       for t in tasks.list())

        wait_for(lambda: scheduled() == OBJECTS, 180, f"all {OBJECTS} tasks Scheduled")
    finally:
        operator.stop()
