"""What the engines need of Kubernetes and of Celery, as protocols (for typing only)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from celery_operator.api.apps import AppRef
from celery_operator.api.celery_state import TaskState
from celery_operator.dispatch.publisher import Publication

from .appresolve import AppProblem, ResolvedApp


class Kube(Protocol):
    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any]: ...

    def patch_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        *,
        resource_version: str | None,
        uid: str | None = None,
    ) -> dict[str, Any]: ...

    def delete(self, plural: str, namespace: str, name: str, *, uid: str | None = None) -> None: ...

    def create(
        self, plural: str, namespace: str, body: Mapping[str, Any]
    ) -> dict[str, Any] | None: ...

    def patch(
        self, plural: str, namespace: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    def list(self, plural: str, namespace: str, label_selector: str) -> list[dict[str, Any]]: ...

    def post_event(
        self, obj: Mapping[str, Any], *, type_: str, reason: str, message: str
    ) -> None: ...


class Apps(Protocol):
    """The Celery apps tasks use (controllers.apps.AppDirectory)."""

    def resolve(self, namespace: str, ref: AppRef | None) -> ResolvedApp | AppProblem: ...

    def apps(self) -> list[ResolvedApp]: ...

    def subscribe(self, fn: Callable[[str], None]) -> None: ...


class Backend(Protocol):
    def publish(self, pub: Publication) -> None: ...

    def read(self, task_ids: Iterable[str]) -> dict[str, TaskState | None]: ...

    def revoke(self, task_id: str, *, terminate: bool, signal: str) -> None: ...

    def mark_revoked(self, task_id: str) -> None: ...

    def is_revoked(self, task_id: str) -> bool: ...

    def broker_run_id(self) -> str: ...

    def consumed_queues(self) -> set[str]: ...

    def events_connected_for(self) -> float | None: ...

    def quiet_events(self, start: float, end: float) -> None: ...
