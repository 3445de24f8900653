"""Every real part starts and talks.

kubectl → API server → Python client; Celery → Redis → a real worker.
"""

from __future__ import annotations

import json
import uuid

import pytest
from celery import Celery
from kubernetes import client

from celery_operator.devstack import CeleryWorker, KubeEnv

pytestmark = pytest.mark.integration


def test_server_version_is_the_pinned_kubernetes(kube: KubeEnv) -> None:
    version = json.loads(kube.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.36.")
    assert version["clientVersion"]["gitVersion"].startswith("v1.36.")


def test_object_applied_with_kubectl_is_read_back_with_the_client(
    kube: KubeEnv, namespace: str
) -> None:
    manifest = f"""
apiVersion: celeryoperator.dev/v1alpha1
kind: ScheduledTask
metadata:
  name: smoke
  namespace: {namespace}
spec:
  task:
    name: demo.add
    args: [2, 3]
"""
    kube.kubectl("apply", "-f", "-", input=manifest)
    api = client.CustomObjectsApi(kube.api_client())
    obj = api.get_namespaced_custom_object(
        "celeryoperator.dev", "v1alpha1", namespace, "scheduledtasks", "smoke"
    )
    assert obj["spec"]["task"] == {"name": "demo.add", "args": [2, 3]} | {
        k: v for k, v in obj["spec"]["task"].items() if k not in ("name", "args")
    }
    assert obj["spec"]["task"]["args"] == [2, 3]
    assert obj["metadata"]["uid"]


def test_task_goes_through_redis_to_a_real_worker(
    celery_worker: CeleryWorker, broker_url: str, backend_url: str
) -> None:
    app = Celery("smoke", broker=broker_url, backend=backend_url)
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
    task_id = str(uuid.uuid4())
    result = app.send_task("demo.add", args=[2, 3], task_id=task_id)
    assert result.get(timeout=30) == 5
    assert result.status == "SUCCESS"


def test_helm_is_the_pinned_version() -> None:
    import subprocess

    from celery_operator.devstack import find_binary

    out = subprocess.run([str(find_binary("helm")), "version", "--short"],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("v3.21.")
