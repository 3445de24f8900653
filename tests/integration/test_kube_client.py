"""The kube/ edge against the real API server: which answers are conflicts, which are
final refusals (never retried at once), and that every status write fits the schema."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from kubernetes import client

from celery_operator.api import GROUP, SCHEDULED_PLURAL, VERSION
from celery_operator.controllers.kubeio import KubeIO, WriteOutcome
from celery_operator.devstack import KubeEnv
from celery_operator.kube.client import Conflict, Gone, KubeClient, Rejected

pytestmark = pytest.mark.integration


@pytest.fixture
def kube_client(kube: KubeEnv) -> KubeClient:
    return KubeClient(kube.api_client())


def _body(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ScheduledTask",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"task": {"name": "demo.add", "args": [1, 2]}, "countdown": 3600},
    }


def test_a_stale_resource_version_is_a_conflict_and_a_schema_refusal_is_final(
    kube_client: KubeClient, namespace: str
) -> None:
    obj = kube_client.create(SCHEDULED_PLURAL, namespace, _body(namespace, "a"))
    assert obj is not None
    rv, uid = obj["metadata"]["resourceVersion"], obj["metadata"]["uid"]
    kube_client.patch_status(SCHEDULED_PLURAL, namespace, "a", {"phase": "Scheduled"},
                             resource_version=rv, uid=uid)
    with pytest.raises(Conflict):  # someone (we) wrote since rv: 409
        kube_client.patch_status(SCHEDULED_PLURAL, namespace, "a", {"phase": "Queued"},
                                 resource_version=rv, uid=uid)
    fresh = kube_client.get(SCHEDULED_PLURAL, namespace, "a")
    with pytest.raises(Rejected) as info:  # 422: the enum refuses it, whatever the rv
        kube_client.patch_status(
            SCHEDULED_PLURAL, namespace, "a", {"phase": "Bogus"},
            resource_version=fresh["metadata"]["resourceVersion"], uid=uid,
        )
    assert info.value.status == 422
    assert "status.phase" in info.value.message and "Bogus" in info.value.message
    assert "https://" not in str(info.value)  # the API server's words, not our URL
    with pytest.raises(Gone):
        kube_client.patch_status(SCHEDULED_PLURAL, namespace, "missing", {"phase": "Queued"},
                                 resource_version=None)


def test_create_answers_already_exists_with_none_and_a_missing_namespace_is_final(
    kube_client: KubeClient, namespace: str
) -> None:
    assert kube_client.create(SCHEDULED_PLURAL, namespace, _body(namespace, "b")) is not None
    assert kube_client.create(SCHEDULED_PLURAL, namespace, _body(namespace, "b")) is None
    gone_ns = f"absent-{uuid.uuid4().hex[:6]}"
    with pytest.raises(Rejected) as info:
        kube_client.create(SCHEDULED_PLURAL, gone_ns, _body(gone_ns, "b"))
    assert info.value.status == 404
    bad = _body(namespace, "c")
    bad["spec"]["countdown"] = -1
    with pytest.raises(Rejected) as info:
        kube_client.create(SCHEDULED_PLURAL, namespace, bad)
    assert info.value.status == 422 and "spec.countdown" in info.value.message


def test_what_rbac_forbids_is_final(kube: KubeEnv, kube_client: KubeClient,
                                    namespace: str) -> None:
    kube_client.create(SCHEDULED_PLURAL, namespace, _body(namespace, "d"))
    nobody = KubeClient(client.ApiClient(
        kube.api_client().configuration, header_name="Impersonate-User", header_value="nobody"
    ))
    for call in (
        lambda: nobody.get(SCHEDULED_PLURAL, namespace, "d"),
        lambda: nobody.delete(SCHEDULED_PLURAL, namespace, "d"),
        lambda: nobody.patch_status(SCHEDULED_PLURAL, namespace, "d", {"phase": "Queued"},
                                    resource_version=None),
    ):
        with pytest.raises(Rejected) as info:
            call()
        assert info.value.status == 403 and "nobody" in info.value.message
    assert kube_client.get(SCHEDULED_PLURAL, namespace, "d")  # still there


def test_kubeio_cuts_every_status_write_to_the_schema_and_rereads_on_conflict(
    kube_client: KubeClient, namespace: str
) -> None:
    obj = kube_client.create(SCHEDULED_PLURAL, namespace, _body(namespace, "e"))
    assert obj is not None

    async def main() -> None:
        io = KubeIO(kube_client, threads=2)
        try:
            huge = {"phase": "Started", "worker": "w" * 10_000,
                    "error": {"type": "E", "message": "m" * 100_000,
                              "traceback": "line\n" * 100_000}}
            outcome, written = await io.write_status(SCHEDULED_PLURAL, obj, huge)
            assert outcome == WriteOutcome.WRITTEN and written is not None
            status = written["status"]
            assert len(status["worker"]) == 255 and status["worker"].endswith("…")
            assert status["error"]["traceback"].endswith("line\n")  # the end is kept
            # Written against the old resourceVersion: a conflict, with the fresh object.
            outcome, fresh = await io.write_status(SCHEDULED_PLURAL, obj, {"phase": "Queued"})
            assert outcome == WriteOutcome.CONFLICT and fresh is not None
            assert fresh["status"]["phase"] == "Started"
            with pytest.raises(Rejected):
                await io.write_status(SCHEDULED_PLURAL, fresh, {"phase": "Bogus"})
        finally:
            io.shutdown()

    asyncio.run(main())
