"""One coordination.k8s.io/v1 Lease: read it, create it, replace it conditionally.

Leader election (controllers/leadership.py) needs nothing else. Every write carries the
resourceVersion it was planned from, so of two candidates writing at once one wins and
the other gets None (409), the way client-go's resourcelock works.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from .client import rejected

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseRecord:
    holder: str  # "" = released: anyone may take it at once
    duration_seconds: int
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int
    resource_version: str = ""


def _micro_time(value: datetime | None) -> str | None:
    # MicroTime: RFC 3339 with microseconds, in UTC.
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value is not None else None


class LeaseStore:
    """Sync calls (run them in a thread), each bounded by `timeout` seconds."""

    def __init__(
        self, api_client: client.ApiClient, namespace: str, name: str, *, timeout: float
    ) -> None:
        self.api = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.timeout = timeout

    def get(self) -> LeaseRecord | None:
        """The Lease as it is now; None when it does not exist."""
        try:
            lease = self.api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self.timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _refused(exc) from exc
        return _record(lease)

    def create(self, record: LeaseRecord) -> LeaseRecord | None:
        """None: someone created it first."""
        body: Any = {"metadata": {"name": self.name, "namespace": self.namespace},
                "spec": _spec(record)}
        try:
            lease = self.api.create_namespaced_lease(
                self.namespace, body, _request_timeout=self.timeout
            )
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise _refused(exc) from exc
        return _record(lease)

    def replace(self, record: LeaseRecord) -> LeaseRecord | None:
        """Write `record` if the Lease is still at record.resource_version; None if not."""
        body: Any = {
            "metadata": {"name": self.name, "namespace": self.namespace,
                         "resourceVersion": record.resource_version},
            "spec": _spec(record),
        }
        try:
            lease = self.api.replace_namespaced_lease(
                self.name, self.namespace, body, _request_timeout=self.timeout
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                return None
            raise _refused(exc) from exc
        return _record(lease)


    def watch_released(self, on_released: Callable[[], None], stop: threading.Event) -> None:
        """Blocks (a thread): calls `on_released` whenever the Lease is seen without a
        holder (released by a leader shutting down), so a standby takes it at once
        instead of at its next retry. Errors: tried again after `timeout`."""
        selector = f"metadata.name={self.name}"
        failed = ""
        while not stop.is_set():
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in stream.stream(  # type: ignore[no-untyped-call]
                    self.api.list_namespaced_lease, self.namespace, field_selector=selector,
                    timeout_seconds=60, _request_timeout=75,
                ):
                    if stop.is_set():
                        break
                    spec = getattr(event.get("object"), "spec", None)
                    if spec is not None and not spec.holder_identity:
                        on_released()
            except Exception as exc:
                if str(exc) != failed:  # once per distinct failure: it is tried again
                    failed = str(exc)
                    logger.warning("watching Lease %s/%s failed (standbys then take a "
                                   "released Lease at their next retry): %s",
                                   self.namespace, self.name, exc)
                stop.wait(self.timeout)
            finally:
                stream.stop()  # type: ignore[no-untyped-call]


def _refused(exc: ApiException) -> Exception:
    if exc.status in (401, 403):
        return rejected(exc)
    return exc


def _spec(record: LeaseRecord) -> dict[str, Any]:
    return {
        "holderIdentity": record.holder or None,
        "leaseDurationSeconds": record.duration_seconds,
        "acquireTime": _micro_time(record.acquire_time),
        "renewTime": _micro_time(record.renew_time),
        "leaseTransitions": record.transitions,
    }


def _record(lease: Any) -> LeaseRecord:
    spec = cast(client.V1LeaseSpec, lease.spec) or client.V1LeaseSpec()
    return LeaseRecord(
        holder=spec.holder_identity or "",
        duration_seconds=int(spec.lease_duration_seconds or 0),
        acquire_time=spec.acquire_time,
        renew_time=spec.renew_time,
        transitions=int(spec.lease_transitions or 0),
        resource_version=str(lease.metadata.resource_version or ""),
    )
